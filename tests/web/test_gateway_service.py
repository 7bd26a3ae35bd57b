"""The gateway use case below the web layer: one rate budget for every worker, and the
whole use case for callers that hold the body already."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import gc
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import FAST_HTTP
from tests.web.support import (
    ACME,
    CONNECTOR,
    PROJECT,
    alter_secret,
    instance_body,
    macs_keyed_with,
    sign,
    ticket_event,
)
from ucf.service.context import UcfContext
from ucf.service.errors import NotFoundError
from ucf.service.settings import Settings
from ucf.service.webhooks import (
    Accepted,
    Delivery,
    RateLimitExceeded,
    TokenReserve,
    WebhookGateway,
    WebhookMisconfigured,
)
from ucf.stores.errors import StoreUnavailable
from ucf.web.metrics import Metrics

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _payloads_alive(marker: str) -> int:
    """Parsed payloads still alive that carry ``marker`` in their unmapped member."""
    return sum(
        1 for found in gc.get_objects() if type(found) is dict and found.get("unmapped") == marker
    )


@contextlib.asynccontextmanager
async def _with_an_instance(
    settings: Settings, descriptor: dict[str, Any], *, clock: Callable[[], datetime]
) -> AsyncIterator[UcfContext]:
    """A service context with ``descriptor`` registered and one instance of it in PROJECT."""
    async with await UcfContext.open(settings, clock=clock) as context:
        await context.connectors.register(descriptor)
        body = instance_body("http://127.0.0.1:9")
        await context.instances.create(
            PROJECT, CONNECTOR, credentials=body["credentials"], config=body["config"]
        )
        yield context


def test_a_reserve_grows_while_used_up_in_time_and_shrinks_when_stale() -> None:
    reserve = TokenReserve(max_batch=8)
    batches = []
    now = 0.0
    for _ in range(5):  # a burst: each reserve is spent well within its second
        assert not reserve.take(now)
        batch = reserve.next_batch(now)
        batches.append(batch)
        reserve.refill(batch - 1, now)
        while reserve.take(now):
            pass
        now += 0.01
    assert batches == [1, 2, 4, 8, 8]
    reserve.refill(5, now)
    later = now + 5  # traffic stopped: the unused tokens are dropped, never spent late
    assert not reserve.take(later)
    assert reserve.next_batch(later) == 4
    assert reserve.tokens == 0


@pytest.mark.usefixtures("young_heap")
async def test_an_instance_deleted_by_another_worker_leaves_no_secret_in_the_gateway(
    tmp_path: Path,
) -> None:
    """A gateway keeps an instance's secrets (and the HMACs keyed with them) for the
    deliveries to come. Deleted through another worker, it never hears of it: once its
    target cache lets it see the instance is gone, it keeps none of them any more."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    clock = [0.0]
    secret = f"acme-{secrets.token_hex(16)}"  # this test's only: other gateways may live on
    async with (
        _with_an_instance(settings, ACME, clock=lambda: NOW) as first,
        await UcfContext.open(settings, clock=lambda: NOW) as second,
    ):
        await first.instances.update(PROJECT, CONNECTOR, credentials={"webhookSecret": secret})
        gateway = WebhookGateway(second, monotonic=lambda: clock[0])
        signed = sign(ticket_event("T-1"), at=NOW.timestamp(), secret=secret)
        delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
        outcome = await gateway.receive(await gateway.target(CONNECTOR, PROJECT), delivery)
        assert isinstance(outcome, Accepted)
        assert macs_keyed_with(secret) == 1
        await first.instances.delete(PROJECT, CONNECTOR)
        clock[0] += 60
        with pytest.raises(NotFoundError):
            await gateway.target(CONNECTOR, PROJECT)
        assert macs_keyed_with(secret) == 0


@pytest.mark.usefixtures("young_heap")
async def test_an_instance_deleted_through_the_same_process_leaves_no_secret_in_its_gateway(
    tmp_path: Path,
) -> None:
    """Deleted by this process's instance service, whoever called it (a script, a form, a
    request cancelled once the delete began), not only by the web routes that told the
    gateway: the secrets and their keyed HMACs go with the delete, not at the next
    delivery to a URL that leads nowhere."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    secret = f"acme-{secrets.token_hex(16)}"
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        await context.instances.update(PROJECT, CONNECTOR, credentials={"webhookSecret": secret})
        gateway = WebhookGateway(context, monotonic=lambda: 0.0)
        signed = sign(ticket_event("T-1"), at=NOW.timestamp(), secret=secret)
        delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
        outcome = await gateway.receive(await gateway.target(CONNECTOR, PROJECT), delivery)
        assert isinstance(outcome, Accepted)
        assert macs_keyed_with(secret) == 1

        await context.instances.delete(PROJECT, CONNECTOR)

        assert macs_keyed_with(secret) == 0
        assert gateway.cached_target(CONNECTOR, PROJECT) is None


@pytest.mark.usefixtures("young_heap")
async def test_a_cached_secret_is_dropped_once_its_time_is_up_even_if_no_delivery_comes(
    tmp_path: Path,
) -> None:
    """An instance's secrets were cached for 30 s of use, but only a later delivery to it
    replaced them: one that never came (deleted through another worker, a provider that
    stopped sending) kept them, keyed, for the life of the process."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    secret = f"acme-{secrets.token_hex(16)}"
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        await context.instances.update(PROJECT, CONNECTOR, credentials={"webhookSecret": secret})
        gateway = WebhookGateway(context, secret_ttl=0.01)
        signed = sign(ticket_event("T-1"), at=NOW.timestamp(), secret=secret)
        delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
        outcome = await gateway.receive(await gateway.target(CONNECTOR, PROJECT), delivery)
        assert isinstance(outcome, Accepted)  # verified: an HMAC was keyed with the secret

        for _ in range(500):  # the timer fires after 10 ms; the bound only ends a failure
            if macs_keyed_with(secret) == 0:
                break
            await asyncio.sleep(0.01)
        assert macs_keyed_with(secret) == 0


async def test_two_workers_together_never_admit_more_than_the_instance_limit(
    tmp_path: Path,
) -> None:
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}  # 100 a minute
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    first = await UcfContext.open(settings, clock=lambda: NOW)
    second = await UcfContext.open(settings, clock=lambda: NOW)
    try:
        await first.connectors.register(ACME)
        body = instance_body("http://127.0.0.1:9")
        await first.instances.create(
            PROJECT, CONNECTOR, credentials=body["credentials"], config=body["config"]
        )
        workers = [
            WebhookGateway(first, monotonic=lambda: 0.0),
            WebhookGateway(second, monotonic=lambda: 0.0),
        ]
        admitted = refused = 0
        for n in range(300):
            gateway = workers[n % 2]
            signed = sign(ticket_event(f"T-{n}"), delivery=f"d-{n}", at=NOW.timestamp())
            delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
            target = await gateway.target(CONNECTOR, PROJECT)
            try:
                await gateway.receive(target, delivery)
                admitted += 1
            except RateLimitExceeded:
                refused += 1
        # The bucket holds 100 and the clock stands still: never more than 100, and at
        # most the two reserves' leftovers (4 tokens each at 100/min) go unused.
        assert 92 <= admitted <= 100
        assert admitted + refused == 300
    finally:
        await first.close()
        await second.close()


async def test_a_changed_descriptor_limit_is_charged_once_the_target_is_read_again(
    tmp_path: Path,
) -> None:
    """The gateway keeps an instance's limit per connector object: a descriptor updated
    with another ``rateLimitPerMinute`` is charged as soon as its target is read again."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    seconds = [0.0]
    strict = copy.deepcopy(ACME)
    strict["ingestion"]["webhook"]["rateLimitPerMinute"] = 1

    def clock() -> datetime:
        return NOW + timedelta(seconds=seconds[0])

    async with _with_an_instance(settings, strict, clock=clock) as context:
        gateway = WebhookGateway(context, monotonic=lambda: seconds[0])

        deliver = functools.partial(_status_of, gateway, clock)

        assert [await deliver(n) for n in range(2)] == ["200", "429"]
        seconds[0] += 2  # past the target's cache; the bucket refills at the new rate
        generous = copy.deepcopy(strict)
        generous["ingestion"]["webhook"]["rateLimitPerMinute"] = 6000  # 100 a second
        await context.connectors.edit(CONNECTOR, generous)
        assert [await deliver(n) for n in range(2, 5)] == ["200"] * 3


async def test_a_flood_from_many_addresses_keeps_a_bounded_number_of_reserves(
    tmp_path: Path,
) -> None:
    """Each unverified sender gets a token reserve; a flood from many addresses must not
    grow them without end, and the instance's own budget still admits its deliveries."""
    from ucf.service.webhooks import Unverified

    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context, max_reserves=4)
        target = await gateway.target(CONNECTOR, PROJECT)
        for n in range(40):
            forged = Delivery("POST", b"{}", {}, {}, "http://ucf.test/x", client=f"198.51.100.{n}")
            with pytest.raises(Unverified):
                await gateway.receive(target, forged)
        assert len(gateway._reserves) <= 4
        signed = sign(ticket_event("T-1"), delivery="d-1", at=NOW.timestamp())
        genuine = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
        await gateway.receive(target, genuine)
        assert len(gateway._reserves) <= 4


async def test_receive_webhook_takes_a_body_read_in_full_in_the_gateways_order(
    tmp_path: Path,
) -> None:
    from ucf.service.errors import NotFoundError
    from ucf.service.webhooks import Accepted, PayloadTooLarge, receive_webhook

    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_WEBHOOK_MAX_BYTES": "2000"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context)
        signed = sign(ticket_event("T-1"), delivery="d-1", at=NOW.timestamp())
        ok = Delivery("POST", signed.body, signed.headers, {}, "http://x")
        outcome = await receive_webhook(gateway, CONNECTOR, PROJECT, ok)
        assert outcome == Accepted(received=1, inserted=1, duplicates=0)
        huge = Delivery("POST", b"x" * 2001, {}, {}, "http://x")
        with pytest.raises(NotFoundError):  # where it goes is decided first
            await receive_webhook(gateway, CONNECTOR, "elsewhere", huge)
        with pytest.raises(PayloadTooLarge):
            await receive_webhook(gateway, CONNECTOR, PROJECT, huge)


async def test_deliveries_keep_an_instances_health_fresh_and_failed_verifications_degrade_it(
    tmp_path: Path,
) -> None:
    """A webhook instance whose deliveries stop verifying (a rotated secret) shows it."""
    from ucf.service.webhooks import Unverified

    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    ticks = [0.0]
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context, monotonic=lambda: ticks[0])
        target = await gateway.target(CONNECTOR, PROJECT)
        for n in range(3):
            ticks[0] += 10  # further apart than the failure-report period
            forged = sign(ticket_event(f"T-{n}"), delivery=f"x-{n}", secret="not-the-secret")
            with pytest.raises(Unverified):
                await gateway.receive(
                    target, Delivery("POST", forged.body, forged.headers, {}, "http://x")
                )
        record = await context.instances.record(PROJECT, CONNECTOR)
        assert (record.health_state, record.delivery_failures) == ("degraded", 3)
        assert record.last_error is not None
        assert "failed verification" in record.last_error
        assert record.consecutive_failures == 0  # polling does not back off for strangers
        assert record.last_delivery_at is None

        ticks[0] += 1
        good = sign(ticket_event("T-ok"), delivery="d-ok", at=NOW.timestamp())
        await gateway.receive(target, Delivery("POST", good.body, good.headers, {}, "http://x"))
        record = await context.instances.record(PROJECT, CONNECTOR)
        assert (record.health_state, record.last_error, record.delivery_failures) == (
            "healthy",
            None,
            0,
        )
        assert record.last_delivery_at == NOW


async def test_deliveries_an_unreadable_secret_refuses_leave_the_instances_health_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook-only instance is never polled: its deliveries are all that shows its
    health. Refused 503 for a secret that cannot be read (here altered on disk), they
    only went to the log, and the instance stayed healthy on its page meanwhile; they
    now count in its health as refused deliveries do, with the store's reason (which
    says how to repair it). The sender is told nothing of it."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    ticks = [0.0]
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        record = await context.instances.record(PROJECT, CONNECTOR)
        assert record.credential_secret_ref is not None
        alter_secret(tmp_path, record.credential_secret_ref)
        gateway = WebhookGateway(context, monotonic=lambda: ticks[0])
        target = await gateway.target(CONNECTOR, PROJECT)
        for n in range(3):
            ticks[0] += 10  # further apart than the failure-report period
            signed = sign(ticket_event(f"T-{n}"), delivery=f"d-{n}", at=NOW.timestamp())
            with pytest.raises(WebhookMisconfigured) as refused:
                await gateway.receive(
                    target, Delivery("POST", signed.body, signed.headers, {}, "http://x")
                )
            assert refused.value.status == 503
            assert "integrity" not in str(refused.value)
        record = await context.instances.record(PROJECT, CONNECTOR)
    assert (record.health_state, record.delivery_failures) == ("degraded", 3)
    assert record.last_error is not None
    assert "cannot be read" in record.last_error
    assert "store the credentials again" in record.last_error
    assert "integrity check" in caplog.text


async def test_a_stored_descriptor_that_does_not_parse_is_a_503_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored descriptor neither the view nor the models read (written by a newer ucf
    with a key this one does not know, say) makes the gateway answer 503
    ``webhook_misconfigured`` (ucf's problem, not the sender's), never a 500 with a
    traceback; the models' error is logged, not sent to the sender."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        newer = {**copy.deepcopy(ACME), "someLaterExtension": True}
        await context.store.descriptors.update(
            CONNECTOR, newer, now=NOW + timedelta(seconds=1), built_in=False
        )
        gateway = WebhookGateway(context)

        with pytest.raises(WebhookMisconfigured) as refused:
            await gateway.target(CONNECTOR, PROJECT)
    assert refused.value.status == 503
    assert "someLaterExtension" not in str(refused.value)
    assert "someLaterExtension" in caplog.text  # what is wrong, for the operator


async def test_a_descriptor_limit_given_at_the_default_still_overrides_the_servers(
    tmp_path: Path,
) -> None:
    """``rateLimitPerMinute`` in the descriptor if set, else ``UCF_WEBHOOK_RPM``
    (docs/web.md): a descriptor that gives 100, the models' default, means 100 even
    where the server's setting is lower, so it must not be dropped when stored."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0", "UCF_WEBHOOK_RPM": "1"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    explicit = copy.deepcopy(ACME)
    explicit["ingestion"]["webhook"]["rateLimitPerMinute"] = 100
    ticks = iter(range(1_000_000))

    def clock() -> datetime:  # each write a later updatedAt: a changed connector
        return NOW + timedelta(seconds=next(ticks))

    async with _with_an_instance(settings, explicit, clock=clock) as context:
        gateway = WebhookGateway(context)
        assert gateway.requests_per_minute(await gateway.target(CONNECTOR, PROJECT)) == 100

        await context.connectors.edit(CONNECTOR, ACME)  # left out: the server's setting
        gateway.forget(PROJECT, CONNECTOR)
        assert gateway.requests_per_minute(await gateway.target(CONNECTOR, PROJECT)) == 1


@pytest.mark.parametrize(
    ("signed_payload", "needed"),
    [("{{timestamp}}.{{body}}", False), ("{{timestamp}}.{{body}}{{url}}", True)],
)
async def test_a_server_works_the_registered_url_out_only_for_a_verifier_that_signs_it(
    tmp_path: Path, signed_payload: str, needed: bool
) -> None:
    """The front builds a delivery's registered URL (public base, Host, path and query)
    only when the target reads it: a verifier that signs it (Trello's scheme), or a
    native handler, which is handed it."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    descriptor = copy.deepcopy(ACME)
    descriptor["ingestion"]["webhook"]["signature"]["signedPayload"] = signed_payload
    async with _with_an_instance(settings, descriptor, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context)
        target = await gateway.target(CONNECTOR, PROJECT)
        assert target.needs_url is needed
        assert (await gateway.target(CONNECTOR, PROJECT)).needs_url is needed  # remembered


async def test_a_delivery_is_stored_as_received_at_the_moment_it_was_verified(
    tmp_path: Path,
) -> None:
    """One clock read a delivery: the moment its signature window was checked at is its
    signals' ``receivedAt`` (a clock that moves on at every read tells them apart)."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    reads: list[datetime] = []

    def clock() -> datetime:
        reads.append(NOW + timedelta(milliseconds=len(reads)))
        return reads[-1]

    async with _with_an_instance(settings, ACME, clock=clock) as context:
        gateway = WebhookGateway(context, monotonic=lambda: 0.0)
        target = await gateway.target(CONNECTOR, PROJECT)
        for n in range(3):  # the first two draw tokens, the first reports the instance's health
            signed = sign(ticket_event(f"T-{n}"), delivery=f"d-{n}", at=NOW.timestamp())
            delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
            before = len(reads)
            await gateway.receive(target, delivery)
        assert len(reads) == before + 1
        listed = await context.store.signals.query(PROJECT)
        assert reads[-1] in {signal.received_at for signal in listed.items}


async def test_a_cached_target_answers_as_the_store_read_does_until_the_cache_lapses(
    tmp_path: Path,
) -> None:
    """The front asks :meth:`WebhookGateway.cached_target` first (no coroutine): nothing
    before the first read or past the TTL, the same target (through the instance's own
    URL too) while cached, and a wrong hook id is the same 404 the store read gives."""
    from ucf.service.errors import NotFoundError

    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    seconds = [0.0]
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context, monotonic=lambda: seconds[0])
        hook_id = (await context.instances.get(PROJECT, CONNECTOR)).hook_id
        assert hook_id is not None
        assert gateway.cached_target(CONNECTOR, PROJECT) is None  # nothing read yet
        shared = await gateway.target(CONNECTOR, PROJECT)
        assert gateway.cached_target(CONNECTOR, PROJECT) is shared
        assert gateway.cached_target(CONNECTOR, PROJECT, hook_id) is None  # secrets not read
        hooked = await gateway.target(CONNECTOR, PROJECT, hook_id)
        assert hooked.via_hook
        assert gateway.cached_target(CONNECTOR, PROJECT, hook_id) is hooked
        with pytest.raises(NotFoundError):
            gateway.cached_target(CONNECTOR, PROJECT, hook_id + "x")
        with pytest.raises(NotFoundError):
            await gateway.target(CONNECTOR, PROJECT, hook_id + "x")
        seconds[0] += 2  # past the target's TTL: the store is read again
        assert gateway.cached_target(CONNECTOR, PROJECT) is None
        assert gateway.cached_target(CONNECTOR, PROJECT, hook_id) is None
        assert (await gateway.target(CONNECTOR, PROJECT, hook_id)).via_hook


@pytest.mark.usefixtures("young_heap")
async def test_a_delivery_waiting_for_its_write_no_longer_holds_its_parsed_payload(
    tmp_path: Path,
) -> None:
    """Deliveries in flight hold their signals while their write commits, not the whole
    parsed payload (a server with 32 in flight kept 32 payloads' objects alive for
    nothing): once mapped, the payload is let go before the gateway awaits the store."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    marker = "payload-0f3c"

    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context, monotonic=lambda: 0.0)
        target = await gateway.target(CONNECTOR, PROJECT)
        for n in range(3):  # the first ones draw tokens and report the instance's health
            event = ticket_event(f"T-{n}") | {"unmapped": marker}
            assert _payloads_alive(marker) == 1  # the scan finds such a payload: ``event`` itself
            signed = sign(event, delivery=f"d-{n}", at=NOW.timestamp())
            del event
            delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
            receiving = asyncio.create_task(gateway.receive(target, delivery))
            seen = steps = 0
            while not receiving.done():
                await asyncio.sleep(0.0005)
                steps += 1
                seen = max(seen, _payloads_alive(marker))
            outcome = receiving.result()
            assert isinstance(outcome, Accepted)
            assert outcome.inserted == 1
            assert steps > 1  # the loop ran while the write was committing
            assert seen == 0


@pytest.mark.usefixtures("young_heap")
async def test_a_connector_with_a_handshake_lets_its_payload_go_before_the_write_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector with handshakes to recognise (Slack, Trello, Asana, MS Graph, Notion)
    has its body parsed before verification, and the verdict keeps that parse: the gateway
    let go of its own reference before the write, but the verdict, alive in the frame
    awaiting it, held the whole payload through the commit all the same. (Its payload
    is alive while the instance's token is drawn, so the scan is made as the write
    starts.)"""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    descriptor = copy.deepcopy(ACME)
    descriptor["ingestion"]["webhook"]["handshakes"] = [
        {
            "type": "challenge",
            "whenPath": "$.type",
            "equals": "url_verification",
            "respondPath": "$.challenge",
            "signed": True,
        }
    ]
    marker = "payload-7a1d"

    async with _with_an_instance(settings, descriptor, clock=lambda: NOW) as context:
        ingest = context.ingestor.ingest
        alive_at_writes: list[int] = []

        async def scanned(*args: Any, **kwargs: Any) -> Any:
            alive_at_writes.append(_payloads_alive(marker))
            return await ingest(*args, **kwargs)

        monkeypatch.setattr(context.ingestor, "ingest", scanned)
        gateway = WebhookGateway(context, monotonic=lambda: 0.0)
        target = await gateway.target(CONNECTOR, PROJECT)
        for n in range(3):  # the first ones draw tokens and report the instance's health
            signed = sign(
                ticket_event(f"T-{n}") | {"unmapped": marker}, delivery=f"d-{n}", at=NOW.timestamp()
            )
            delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
            outcome = await gateway.receive(target, delivery)
            assert isinstance(outcome, Accepted)
            assert outcome.inserted == 1
        assert alive_at_writes == [0, 0, 0]


def _sqlite(settings: Settings, script: str) -> None:
    """Run ``script`` on the store's file beside ucf (a trigger, as a full disk would act)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(settings.data_dir / "ucf.db")) as conn:
        conn.executescript(script)


REFUSE_SIGNALS = (
    "CREATE TRIGGER test_full BEFORE INSERT ON signals "
    "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
)
REFUSE_GIVING_BACK = (
    "CREATE TRIGGER test_no_refund BEFORE UPDATE ON rate_buckets WHEN NEW.tokens > OLD.tokens "
    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;"
)


@pytest.mark.parametrize(
    "refund", ["to the bucket", "to the reserve, the bucket's write failing too"]
)
@pytest.mark.parametrize("pause", [0.0, 5.0], ids=["at once", "after the reserve went stale"])
async def test_a_delivery_the_store_failed_does_not_use_up_its_senders_allowance(
    tmp_path: Path, refund: str, pause: float
) -> None:
    """Two deliveries a minute: each charged, then refused 5xx because the signal write
    failed. Their tokens were spent all the same, so the sender's retries met 429 for a
    minute. Given back to the bucket, the retries are admitted (then the limit holds);
    should that write fail too, to this process's reserve while it is fresh."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    strict = copy.deepcopy(ACME)
    strict["ingestion"]["webhook"]["rateLimitPerMinute"] = 2
    seconds = [0.0]

    def clock() -> datetime:  # the bucket refills 1 in 30 s: not within this test
        return NOW + timedelta(seconds=seconds[0])

    async with _with_an_instance(settings, strict, clock=clock) as context:
        gateway = WebhookGateway(context, monotonic=lambda: seconds[0])

        deliver = functools.partial(_status_of, gateway, clock)

        _sqlite(settings, REFUSE_SIGNALS)
        if refund != "to the bucket":
            _sqlite(settings, REFUSE_GIVING_BACK)
        failed = [await deliver(n) for n in range(2)]
        _sqlite(settings, "DROP TRIGGER test_full;")
        seconds[0] += pause
        retried = [await deliver(n) for n in range(3)]

    assert failed == ["503", "503"]
    if refund == "to the bucket" or pause == 0.0:
        assert retried == ["200", "200", "429"]
    else:  # the second failure spent the token the first gave back to the reserve;
        # given back again, it went stale there: lost, as a stale reserve's tokens are
        assert retried == ["200", "429", "429"]


async def test_a_token_that_could_not_be_given_back_is_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A delivery the store failed gives its token back; when that fails too (here the
    bucket's write; on DynamoDB also a bucket others kept changing), the log says so for
    the instance and ``ucf_webhook_give_backs_failed_total`` counts it."""
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    metrics = Metrics()
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        gateway = WebhookGateway(context, observer=metrics, monotonic=lambda: 0.0)
        _sqlite(settings, REFUSE_SIGNALS)
        _sqlite(settings, REFUSE_GIVING_BACK)
        assert await _status_of(gateway, lambda: NOW, 0) == "503"
    counted = f'ucf_webhook_give_backs_failed_total{{connector="{CONNECTOR}"}} 1.0'
    assert counted in metrics.render().decode()
    assert any(
        f"{PROJECT}/{CONNECTOR}: a delivery's token could not be given back" in r.getMessage()
        for r in caplog.records
    )


def _bucket_tokens(settings: Settings) -> float:
    import sqlite3

    with contextlib.closing(sqlite3.connect(settings.data_dir / "ucf.db")) as conn:
        (tokens,) = conn.execute(
            "SELECT tokens FROM rate_buckets WHERE bucket_key LIKE 'webhook:%'"
        ).fetchone()
    return float(tokens)


async def test_a_locked_store_answers_the_failed_delivery_without_a_second_lock_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the SQLite lock: the signal write waits ``busy_timeout``
    and fails (503), and giving the token back waited a second ``busy_timeout`` for the
    same lock before the 503 left (60 s, measured with the default 30 s). The answer now
    waits ``give_back_seconds`` at most; the give-back stays queued and lands once the
    lock is let go: the bucket has its token back (before: none, the write timed out)."""
    import sqlite3

    from ucf.stores.sqlite import database

    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 1000)
    environ = {"UCF_ALLOW_HOSTS": "127.0.0.1", "UCF_SCHEDULER": "0"}
    settings = dataclasses.replace(Settings.from_env(environ, data_dir=tmp_path), http=FAST_HTTP)
    async with _with_an_instance(settings, ACME, clock=lambda: NOW) as context:
        # A frozen clock: nothing refills, and the reserve drawn from the bucket stays fresh.
        gateway = WebhookGateway(context, monotonic=lambda: 0.0, give_back_seconds=0.01)

        async def deliver(n: int) -> None:
            signed = sign(ticket_event(f"T-{n}"), delivery=f"d-{n}", at=NOW.timestamp())
            delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
            await gateway.receive(await gateway.target(CONNECTOR, PROJECT), delivery)

        for n in range(4):  # the reserve grows: the next delivery's token is in it already
            await deliver(n)
        before = _bucket_tokens(settings)
        with contextlib.closing(
            sqlite3.connect(settings.data_dir / "ucf.db", isolation_level=None)
        ) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailable):
                await deliver(9)
            other.execute("ROLLBACK")
        # A write queued behind the give-back: once it is done, so is the give-back.
        await context.store.rate_limits.try_acquire(
            "test:after", capacity=1.0, refill_per_second=1.0, now=NOW
        )
    assert _bucket_tokens(settings) == before + 1


async def _status_of(gateway: WebhookGateway, clock: Callable[[], datetime], n: int) -> str:
    """The status a signed Acme delivery ``n`` gets (200, 429 or 503)."""
    signed = sign(ticket_event(f"T-{n}"), delivery=f"d-{n}", at=clock().timestamp())
    delivery = Delivery("POST", signed.body, signed.headers, {}, "http://ucf.test/x")
    try:
        await gateway.receive(await gateway.target(CONNECTOR, PROJECT), delivery)
    except RateLimitExceeded:
        return "429"
    except StoreUnavailable:
        return "503"
    return "200"
