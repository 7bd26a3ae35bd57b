"""One battery for every catalogue connector (SPEC §9, issue 7).

Parametrised over ``builtin_descriptors()``: a connector shipped without a
scenario (``ucf.fakes.scenario``) fails here rather than going untested.
Each test starts the connector's faithful fake on a loopback port and drives
it through the real runtime.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from tests.catalogue.conftest import (
    BRIEF_SIGNAL_TYPES,
    CATALOGUE,
    POLLING,
    RAW_DESCRIPTORS,
    WEBHOOKS,
    DocumentedExample,
    Harness,
    RecordingSleep,
    descriptor_of,
    documented_examples,
    map_delivery,
    webhook_url,
)
from ucf.core.mapping import MappedSignal
from ucf.core.signal import iso_utc
from ucf.core.validation import validate_descriptor
from ucf.fakes.scenario import Scenario, WebhookDelivery, WebhookSample, scenario_for
from ucf.runtime.connection import connect
from ucf.runtime.http import AuthFailed
from ucf.runtime.native import Verified, WebhookContext, WebhookRequest
from ucf.runtime.sources import SourceContext, run_health_check, source_for
from ucf.runtime.webhooks import RejectCode, compile_verifier

SECOND_POLL_AFTER = timedelta(minutes=10)
EXAMPLES = documented_examples()


def _scenario(connector_id: str) -> Scenario:
    return scenario_for(connector_id)


def _verify(
    connector_id: str,
    delivery: WebhookDelivery,
    now: datetime,
    credentials: dict[str, str] | None = None,
) -> RejectCode | None:
    """What the gateway's verifier says about ``delivery``: None when accepted."""
    descriptor = descriptor_of(connector_id)
    result = compile_verifier(descriptor).verify(
        body=delivery.body,
        headers=delivery.headers,
        url=delivery.url,
        query=dict(httpx.URL(delivery.url).params),
        credentials=credentials
        if credentials is not None
        else _scenario(connector_id).credentials(),
        now=now,
    )
    return None if result.reason is None else result.reason.code


def _verification(connector_id: str) -> str:
    descriptor = descriptor_of(connector_id)
    assert descriptor.webhook is not None
    return descriptor.webhook.verification


def _native(connector_id: str) -> bool:
    return descriptor_of(connector_id).kind == "native"


async def _native_deliveries(
    connector_id: str, harness: Harness, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> list[MappedSignal]:
    """A native connector's webhook samples through its own handler, verified against its
    fake as the gateway runs them (the fuller profile battery is on branch native-jira)."""
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    signals: list[MappedSignal] = []
    with scenario.fake(now) as fake:
        for name, value in scenario.server_environment(fake).items():
            monkeypatch.setenv(name, value)
        source = source_for(descriptor)
        handler = source.webhooks
        if handler is None:
            return signals
        config, credentials = scenario.config(fake.base_url), scenario.credentials()

        async def upstream() -> SourceContext:
            return connect(source, credentials=credentials, config=config, client=harness.client)

        context = WebhookContext("battery", connector_id, credentials, config, now, upstream)
        for sample in scenario.webhook_samples():
            delivery = scenario.sign(sample, url=webhook_url(connector_id), at=now)
            request = WebhookRequest("POST", delivery.body, delivery.headers)
            assert isinstance(await handler.verify(request, context), Verified), sample.name
            result = await handler.signals(request, context)
            assert not isinstance(result, type(None))
            signals += getattr(result, "signals", [])
    return signals


SIGNED = [c for c in WEBHOOKS if _verification(c) == "signature"]
VERIFIED = [c for c in WEBHOOKS if _verification(c) != "none"]


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


# --------------------------------------------------------------------------- polling


@pytest.mark.parametrize("connector_id", POLLING)
async def test_first_poll_takes_the_initial_window_across_every_page(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    assert descriptor.polling is not None
    lookback = timedelta(seconds=descriptor.polling.initial_lookback_seconds)
    with scenario.fake(now) as fake:
        poll = await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
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
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    later = now + SECOND_POLL_AFTER
    with scenario.fake(now) as fake:
        first = await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
        activity = fake.add_activity(later)
        second = await harness.poll(
            descriptor, scenario, fake, checkpoint=first.checkpoint, now=later
        )

    # New items always; changed ones where a poll can see them (Slack's history lists
    # messages by creation time, so edits and reactions only arrive by webhook).
    assert activity.new_ids
    fresh = [s for s in second.signals if s.dedup_key not in first.keys]
    assert {s.item_id for s in fresh} == activity.ids
    assert second.errors == []
    assert second.checkpoint is not None
    assert second.checkpoint > (first.checkpoint or "")
    assert second.checkpoint <= iso_utc(later)


@pytest.mark.parametrize("connector_id", POLLING)
async def test_bad_credentials_stop_the_poll_with_a_clear_secret_free_error(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    bad = scenario.bad_credentials()
    with scenario.fake(now) as fake:
        with pytest.raises(AuthFailed) as caught:
            await harness.poll(
                descriptor, scenario, fake, checkpoint=None, now=now, credentials=bad
            )
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
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    from ucf.runtime.auth import build_auth

    if _native(connector_id):
        with scenario.fake(now) as fake:
            source = source_for(descriptor)
            context = connect(
                source,
                credentials=scenario.credentials(),
                config=scenario.config(fake.base_url),
                client=harness.client,
            )
            good = await source.health_check(context)
        assert good.ok, good.error
        return  # native sources check what their upstream needs; bad input: their own tests
    with scenario.fake(now) as fake:
        config = scenario.config(fake.base_url)
        results = []
        for credentials in (scenario.credentials(), scenario.bad_credentials()):
            auth = build_auth(
                descriptor.auth, credentials, token_client=harness.client, config=config
            )
            context = SourceContext(client=harness.client, auth=auth, config=config)
            results.append(await run_health_check(descriptor, context))
    good, bad = results
    assert good.ok, good.error
    assert not bad.ok
    assert bad.error
    for value in scenario.bad_credentials().values():
        assert value not in bad.error


@pytest.mark.parametrize("connector_id", POLLING)
async def test_rate_limited_poll_waits_as_asked_and_completes(
    connector_id: str, harness: Harness, now: datetime
) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    sleep = RecordingSleep()
    with scenario.fake(now) as fake:
        clean = await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
        fake.server.inject(fake.rate_limit_fault(retry_after=3), path=fake.poll_route, times=1)
        throttled = await harness.poll(
            descriptor, scenario, fake, checkpoint=None, now=now, sleep=sleep
        )

    assert throttled.keys == clean.keys
    assert sum(page.rate_limit_waits for page in throttled.pages) == 1
    assert sleep.calls, "the runtime should have paused before trying again"


# --------------------------------------------------------------------------- signals


async def _all_signals(
    connector_id: str, harness: Harness, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Signal types of a first poll, an incremental poll and every webhook sample."""
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    types: list[str] = []
    if _native(connector_id):
        pushed = {
            s.signal.type for s in await _native_deliveries(connector_id, harness, now, monkeypatch)
        }
        assert pushed == scenario.webhook_signal_types
        return sorted(pushed)
    if descriptor.polling is not None:
        later = now + SECOND_POLL_AFTER
        with scenario.fake(now) as fake:
            first = await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
            fake.add_activity(later)
            second = await harness.poll(
                descriptor, scenario, fake, checkpoint=first.checkpoint, now=later
            )
        polled = first.types | second.types
        assert polled == scenario.polling_signal_types
        types += sorted(polled)
    if descriptor.webhook is not None:
        url = webhook_url(connector_id)
        pushed: set[str] = set()
        for sample in scenario.webhook_samples():
            delivered = map_delivery(descriptor, scenario.sign(sample, url=url, at=now), now)
            pushed |= {s.signal.type for s in delivered.signals}
        assert pushed == scenario.webhook_signal_types
        types += sorted(pushed)
    return types


@pytest.mark.parametrize("connector_id", CATALOGUE)
async def test_every_signal_type_of_the_brief_comes_out(
    connector_id: str, harness: Harness, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    produced = set(await _all_signals(connector_id, harness, now, monkeypatch))
    missing = BRIEF_SIGNAL_TYPES.get(connector_id, frozenset()) - produced
    assert not missing, f"never produced: {sorted(missing)} (produced {sorted(produced)})"
    assert "unknown" not in produced


@pytest.mark.parametrize("connector_id", CATALOGUE)
async def test_priority_participants_and_tags_are_mapped(
    connector_id: str, harness: Harness, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    signals = []
    expectations = scenario.expected_metadata(None) if descriptor.polling is None else ()
    if _native(connector_id):
        signals += await _native_deliveries(connector_id, harness, now, monkeypatch)
    if descriptor.webhook is not None:
        url = webhook_url(connector_id)
        for sample in scenario.webhook_samples():
            signals += map_delivery(descriptor, scenario.sign(sample, url=url, at=now), now).signals
    if descriptor.polling is not None:  # polled signals win: they are checked when there are any
        with scenario.fake(now) as fake:
            signals += (
                await harness.poll(descriptor, scenario, fake, checkpoint=None, now=now)
            ).signals
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


@pytest.mark.parametrize("connector_id", WEBHOOKS)
def test_deliveries_signed_by_the_provider_are_accepted(connector_id: str, now: datetime) -> None:
    scenario = _scenario(connector_id)
    url = webhook_url(connector_id)
    for sample in _samples(connector_id):
        assert _verify(connector_id, scenario.sign(sample, url=url, at=now), now) is None, (
            sample.name
        )


@pytest.mark.parametrize("connector_id", VERIFIED)
def test_deliveries_checked_against_another_secret_are_rejected(
    connector_id: str, now: datetime
) -> None:
    scenario = _scenario(connector_id)
    key = compile_verifier(descriptor_of(connector_id)).secret_credential
    assert key is not None
    other = {**scenario.credentials(), key: "not-the-secret-the-provider-signs-with"}
    url = webhook_url(connector_id)
    for sample in _samples(connector_id):
        verdict = _verify(connector_id, scenario.sign(sample, url=url, at=now), now, other)
        assert verdict in (RejectCode.SIGNATURE_MISMATCH, RejectCode.TOKEN_MISMATCH), sample.name


@pytest.mark.parametrize("connector_id", SIGNED)
def test_tampered_deliveries_are_rejected(connector_id: str, now: datetime) -> None:
    scenario = _scenario(connector_id)
    url = webhook_url(connector_id)
    for sample in _samples(connector_id):
        delivery = scenario.sign(sample, url=url, at=now).tampered()
        assert _verify(connector_id, delivery, now) is RejectCode.SIGNATURE_MISMATCH, sample.name


@pytest.mark.parametrize("connector_id", WEBHOOKS)
def test_replays_outside_the_window_are_rejected_where_the_scheme_has_one(
    connector_id: str, now: datetime
) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    signature = descriptor.signature_verification()
    window = signature.timestamp if signature is not None else None
    sample = _samples(connector_id)[0]
    late = now + timedelta(minutes=20)
    if window is not None:
        late = now + timedelta(seconds=window.tolerance_seconds + 60)
    replayed = scenario.sign(sample, url=webhook_url(connector_id), at=now)
    verdict = _verify(connector_id, replayed, late)
    if window is None:
        # GitHub and Trello sign no timestamp (see their webhook docs): a replay verifies, and
        # the delivery id dedups it. Asserted so a scheme change is noticed.
        assert verdict is None
    else:
        assert verdict is RejectCode.TIMESTAMP_OUTSIDE_WINDOW


@pytest.mark.parametrize("connector_id", WEBHOOKS)
def test_every_delivered_event_type_maps_to_its_signal_type(
    connector_id: str, now: datetime
) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    url = webhook_url(connector_id)
    for sample in _samples(connector_id):
        delivered = map_delivery(descriptor, scenario.sign(sample, url=url, at=now), now)
        assert delivered.handled, f"{sample.name}: event {delivered.event_type} not handled"
        assert delivered.errors == [], sample.name
        assert tuple(s.signal.type for s in delivered.signals) == sample.expected_types, sample.name


@pytest.mark.parametrize("connector_id", WEBHOOKS)
def test_unknown_event_types_are_ignored(connector_id: str, now: datetime) -> None:
    descriptor = descriptor_of(connector_id)
    scenario = _scenario(connector_id)
    sample = scenario.unknown_event_sample()
    assert sample is not None, "a scenario provides a delivery of an unhandled event type"
    delivery = scenario.sign(sample, url=webhook_url(connector_id), at=now)
    assert _verify(connector_id, delivery, now) is None
    delivered = map_delivery(descriptor, delivery, now)
    assert delivered.event_type is not None
    assert not delivered.handled
    assert delivered.signals == []


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_documented_provider_payloads_verify_and_map(
    example: DocumentedExample, now: datetime
) -> None:
    descriptor = descriptor_of(example.connector)
    scenario = _scenario(example.connector)
    sample = WebhookSample(
        example.file.name, example.file.read_bytes(), example.headers, example.expected_types
    )
    delivery = scenario.sign(sample, url=webhook_url(example.connector), at=now)
    assert _verify(example.connector, delivery, now) is None
    delivered = map_delivery(descriptor, delivery, now)
    assert delivered.errors == []
    assert tuple(s.signal.type for s in delivered.signals) == example.expected_types
