"""One battery for every catalogue connector (SPEC §9, issues 7 and 11).

Parametrised over ``builtin_descriptors()``: a connector shipped without a
scenario (``ucf.fakes.scenario``) fails here rather than going untested.
Each test starts the connector's faithful fake on a loopback port and drives
it through the real runtime. Generic and native connectors take the same
checks; :mod:`tests.catalogue.profiles` is how each kind is run.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from tests.catalogue.conftest import (
    BRIEF_SIGNAL_TYPES,
    CATALOGUE,
    POLLING,
    RAW_DESCRIPTORS,
    SIGNED,
    VERIFIED,
    WEBHOOKS,
    DocumentedExample,
    Harness,
    RecordingSleep,
    descriptor_of,
    documented_examples,
    webhook_url,
)
from tests.catalogue.profiles import ConnectorProfile, GenericProfile
from ucf.core.signal import iso_utc
from ucf.core.validation import validate_descriptor
from ucf.fakes.scenario import Scenario, WebhookSample, scenario_for
from ucf.runtime.http import AuthFailed
from ucf.runtime.webhooks import RejectCode
from ucf.service.instances import check_config, check_credentials

SECOND_POLL_AFTER = timedelta(minutes=10)
EXAMPLES = documented_examples()


def _scenario(connector_id: str) -> Scenario:
    return scenario_for(connector_id)


def _handshakes() -> list[str]:
    """Connectors whose provider sends a set-up request (the scenario says which)."""
    found = []
    for connector_id in WEBHOOKS:
        try:
            sample = _scenario(connector_id).handshake(url=webhook_url(connector_id), at=_NOW)
        except LookupError:
            found.append(connector_id)  # the scenario test reports it
            continue
        if sample is not None:
            found.append(connector_id)
    return found


_NOW = datetime(2026, 1, 1)
HANDSHAKES = _handshakes()


# --------------------------------------------------------------------------- descriptors


@pytest.mark.parametrize("connector_id", CATALOGUE)
def test_shipped_descriptor_is_valid_and_named_after_its_id(connector_id: str) -> None:
    descriptor, problems = validate_descriptor(RAW_DESCRIPTORS[connector_id])
    assert problems == [], "\n".join(str(p) for p in problems)
    assert descriptor is not None
    assert descriptor.id == connector_id


@pytest.mark.parametrize("connector_id", CATALOGUE)
def test_every_catalogue_connector_has_a_scenario(connector_id: str) -> None:
    scenario = _scenario(connector_id)
    assert scenario.connector_id == connector_id


@pytest.mark.parametrize("connector_id", CATALOGUE)
def test_the_scenarios_settings_are_ones_the_setup_form_accepts(connector_id: str) -> None:
    """The battery and ``ucf sandbox`` connect with what a user could enter: no key the
    runtime keeps for itself (an access token), nothing the form would refuse."""
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    check_config(descriptor, scenario.config("http://127.0.0.1:9"))
    check_credentials(descriptor, scenario.credentials())
    check_credentials(descriptor, scenario.bad_credentials(), partial=True)


# --------------------------------------------------------------------------- polling


@pytest.mark.parametrize("connector_id", POLLING)
async def test_first_poll_takes_the_initial_window_across_every_page(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = harness.profile(connector_id)
    lookback = profile.initial_lookback
    with profile.scenario.fake(now) as fake:
        poll = await profile.poll(fake, checkpoint=None, now=now)
        expected = fake.ids_changed_since(now - lookback)
        stale = fake.ids_changed_since(now - 100 * lookback) - expected

    assert poll.errors == []
    assert len(poll.pages) >= 2, "the fake's dataset should span several pages"
    assert poll.pages[-1].last
    assert not poll.pages[-1].truncated
    assert poll.item_ids == expected
    assert stale, "the fake should hold items older than the initial window"
    assert not poll.item_ids & stale
    assert poll.checkpoint is not None


@pytest.mark.parametrize("connector_id", POLLING)
async def test_second_poll_brings_only_new_or_changed_items(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = harness.profile(connector_id)
    later = now + SECOND_POLL_AFTER
    with profile.scenario.fake(now) as fake:
        first = await profile.poll(fake, checkpoint=None, now=now)
        activity = fake.add_activity(later)
        second = await profile.poll(fake, checkpoint=first.checkpoint, now=later)

    # New items always; changed ones where a poll can see them (Slack's history lists
    # messages by creation time, so edits and reactions only arrive by webhook).
    assert activity.new_ids
    fresh = [s for s in second.signals if s.dedup_key not in first.keys]
    assert {s.item_id for s in fresh} == activity.ids
    assert second.errors == []
    assert second.checkpoint is not None
    if isinstance(profile, GenericProfile):
        assert second.checkpoint > (first.checkpoint or "")
        assert second.checkpoint <= iso_utc(later)
    else:  # a provider's opaque cursor (Graph's deltaLink): it moves on, its order means nothing
        assert second.checkpoint != first.checkpoint


@pytest.mark.parametrize("connector_id", POLLING)
async def test_bad_credentials_stop_the_poll_with_a_clear_secret_free_error(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = harness.profile(connector_id)
    bad = profile.scenario.bad_credentials()
    with profile.scenario.fake(now) as fake:
        with pytest.raises(AuthFailed) as caught:
            await profile.poll(fake, checkpoint=None, now=now, credentials=bad)
        requests = len(fake.server.requests)

    message = str(caught.value)
    assert "rejected" in message or "refused" in message, message
    for value in bad.values():
        assert value not in message
    assert requests <= 2, "a rejected credential must not be retried in a loop"


@pytest.mark.parametrize("connector_id", CATALOGUE)
async def test_health_check_passes_with_good_and_fails_clearly_with_bad_credentials(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = harness.profile(connector_id)
    scenario = profile.scenario
    with scenario.fake(now) as fake:
        results = [
            await profile.health(fake, credentials)
            for credentials in (scenario.credentials(), scenario.bad_credentials())
        ]
    good, bad = results
    assert good.ok, good.error
    if not scenario.bad_credentials():
        # Nothing to get wrong (SES without an S3 bucket holds no credential): the check
        # passes on what the instance has, which the good run just proved.
        assert not scenario.credentials()
        return
    assert not bad.ok
    assert bad.error
    for value in scenario.bad_credentials().values():
        assert value not in bad.error


@pytest.mark.parametrize("connector_id", POLLING)
async def test_rate_limited_poll_waits_as_asked_and_completes(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = harness.profile(connector_id)
    sleep = RecordingSleep()
    with profile.scenario.fake(now) as fake:
        clean = await profile.poll(fake, checkpoint=None, now=now)
        fake.server.inject(fake.rate_limit_fault(retry_after=3), path=fake.poll_route, times=1)
        throttled = await profile.poll(fake, checkpoint=None, now=now, sleep=sleep)

    assert throttled.keys == clean.keys
    assert sum(page.rate_limit_waits for page in throttled.pages) == 1
    assert sleep.calls, "the runtime should have paused before trying again"


# --------------------------------------------------------------------------- signals


async def _all_signals(connector_id: str, harness: Harness, now: datetime) -> list[str]:
    """Signal types of a first poll, an incremental poll and every webhook sample."""
    profile = harness.profile(connector_id)
    scenario = profile.scenario
    types: list[str] = []
    if profile.polls:
        later = now + SECOND_POLL_AFTER
        with scenario.fake(now) as fake:
            first = await profile.poll(fake, checkpoint=None, now=now)
            fake.add_activity(later)
            second = await profile.poll(fake, checkpoint=first.checkpoint, now=later)
        polled = first.types | second.types
        assert polled == scenario.polling_signal_types
        types += sorted(polled)
    if profile.receives_webhooks:
        pushed: set[str] = set()
        for sample in scenario.webhook_samples():
            delivered = await profile.deliver(profile.sign(sample, now), now)
            pushed |= {s.signal.type for s in delivered.signals}
        assert pushed == scenario.webhook_signal_types
        types += sorted(pushed)
    return types


@pytest.mark.parametrize("connector_id", CATALOGUE)
async def test_every_signal_type_of_the_brief_comes_out(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    produced = set(await _all_signals(connector_id, harness, now))
    missing = BRIEF_SIGNAL_TYPES.get(connector_id, frozenset()) - produced
    assert not missing, f"never produced: {sorted(missing)} (produced {sorted(produced)})"
    assert "unknown" not in produced


@pytest.mark.parametrize("connector_id", CATALOGUE)
async def test_priority_participants_and_tags_are_mapped(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = harness.profile(connector_id)
    scenario = profile.scenario
    signals = []
    expectations = scenario.expected_metadata(None) if not profile.polls else ()
    if profile.receives_webhooks:
        for sample in scenario.webhook_samples():
            delivered = await profile.deliver(profile.sign(sample, now), now)
            signals += delivered.signals
    if profile.polls:  # polled signals win: they are checked when there are any
        with scenario.fake(now) as fake:
            signals += (await profile.poll(fake, checkpoint=None, now=now)).signals
            expectations = scenario.expected_metadata(fake)
    assert expectations, "a scenario names items whose metadata the battery checks"
    by_id = {s.item_id: s.signal for s in signals}
    for expected in expectations:
        signal = by_id.get(expected.item_id)
        assert signal is not None, f"no signal for item {expected.item_id}"
        metadata = signal.metadata
        assert metadata is not None, f"item {expected.item_id} has no metadata"
        assert metadata.priority == expected.priority, expected.item_id
        assert tuple(metadata.participants) == expected.participants, expected.item_id
        assert tuple(metadata.tags) == expected.tags, expected.item_id
        assert tuple(metadata.related_tickets) == expected.related_tickets, expected.item_id


# --------------------------------------------------------------------------- webhooks


def _samples(connector_id: str) -> list[WebhookSample]:
    samples = _scenario(connector_id).webhook_samples()
    assert samples, f"{connector_id} receives webhooks but its scenario has no samples"
    return samples


def _webhook_profile(harness: Harness, connector_id: str) -> ConnectorProfile:
    profile = harness.profile(connector_id)
    assert profile.receives_webhooks
    return profile


@pytest.mark.parametrize("connector_id", WEBHOOKS)
async def test_deliveries_signed_by_the_provider_are_accepted(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    for sample in _samples(connector_id):
        checked = await profile.check(profile.sign(sample, now), now)
        assert checked.accepted, (sample.name, checked)


@pytest.mark.parametrize("connector_id", VERIFIED)
async def test_deliveries_checked_against_another_secret_are_rejected(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    key = profile.secret_credential
    assert key is not None
    other = {**profile.scenario.credentials(), key: "not-the-secret-the-provider-signs-with"}
    for sample in _samples(connector_id):
        delivery = profile.sign(sample, now)
        checked = await profile.check(delivery, now, other)
        assert checked.code in (RejectCode.SIGNATURE_MISMATCH, RejectCode.TOKEN_MISMATCH), (
            sample.name,
            checked,
        )


@pytest.mark.parametrize("connector_id", SIGNED)
async def test_tampered_deliveries_are_rejected(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    assert profile.signed
    for sample in _samples(connector_id):
        delivery = profile.scenario.tamper(profile.sign(sample, now))
        checked = await profile.check(delivery, now)
        assert checked.code == RejectCode.SIGNATURE_MISMATCH, (sample.name, checked)


@pytest.mark.parametrize("connector_id", WEBHOOKS)
async def test_replays_outside_the_window_are_rejected_where_the_scheme_has_one(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    window = profile.replay_window_seconds
    sample = _samples(connector_id)[0]
    late = now + timedelta(minutes=20)
    if window is not None:
        late = now + timedelta(seconds=window + 60)
    replayed = profile.sign(sample, now)
    checked = await profile.check(replayed, late)
    if window is None:
        # GitHub, Trello, Jira and SNS sign no window (see their webhook docs): a replay
        # verifies, and the delivery's identity dedups it. Asserted so a scheme change is noticed.
        assert checked.accepted, checked
    else:
        assert checked.code == RejectCode.TIMESTAMP_OUTSIDE_WINDOW


@pytest.mark.parametrize("connector_id", HANDSHAKES)
async def test_the_providers_set_up_handshake_is_answered_as_documented(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    sample = profile.scenario.handshake(url=webhook_url(connector_id), at=now)
    assert sample is not None
    checked = await profile.check(sample.delivery, now)
    assert checked.handshake is not None, checked
    assert checked.handshake.status == 200
    for name, value in sample.answer_headers.items():
        assert checked.handshake.headers.get(name) == value, name
    if sample.answer_body is not None:
        assert json.loads(checked.handshake.body) == json.loads(sample.answer_body)
    assert dict(checked.keep) == dict(sample.keeps)


@pytest.mark.parametrize("connector_id", WEBHOOKS)
async def test_every_delivered_event_type_maps_to_its_signal_type(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    for sample in _samples(connector_id):
        delivered = await profile.deliver(profile.sign(sample, now), now)
        assert delivered.handled, f"{sample.name}: event {delivered.event_type} not handled"
        assert delivered.errors == [], sample.name
        assert tuple(s.signal.type for s in delivered.signals) == sample.expected_types, sample.name


@pytest.mark.parametrize("connector_id", WEBHOOKS)
async def test_a_redelivery_makes_the_same_signals_so_the_store_keeps_one(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    """Providers retry; the retried delivery must map to the same dedup keys (the
    gateway tests show the store then inserts nothing the second time)."""
    profile = _webhook_profile(harness, connector_id)
    for sample in _samples(connector_id):
        delivery = profile.sign(sample, now)
        first = await profile.deliver(delivery, now)
        again = await profile.deliver(delivery, now + timedelta(minutes=5))
        keys = [s.dedup_key for s in first.signals]
        assert keys, sample.name
        assert [s.dedup_key for s in again.signals] == keys, sample.name


@pytest.mark.parametrize("connector_id", WEBHOOKS)
async def test_unknown_event_types_are_ignored(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, connector_id)
    sample = profile.scenario.unknown_event_sample()
    assert sample is not None, "a scenario provides a delivery of an unhandled event type"
    delivery = profile.sign(sample, now)
    assert (await profile.check(delivery, now)).accepted
    delivered = await profile.deliver(delivery, now)
    assert delivered.errors == []
    assert delivered.signals == []
    if profile.scenario.unmapped_events_answered_200:
        return  # handled as a 200 that stores nothing (see the scenario attribute)
    assert delivered.event_type is not None
    assert not delivered.handled


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
async def test_documented_provider_payloads_verify_and_map(
    example: DocumentedExample, harness: Harness, now: datetime
) -> None:
    profile = _webhook_profile(harness, example.connector)
    sample = WebhookSample(
        example.file.name, example.file.read_bytes(), example.headers, example.expected_types
    )
    delivery = profile.sign(sample, now)
    assert (await profile.check(delivery, now)).accepted
    delivered = await profile.deliver(delivery, now)
    assert delivered.errors == []
    assert tuple(s.signal.type for s in delivered.signals) == example.expected_types
