"""Secrets a flow keeps for minutes: a consent's PKCE verifier, a setup flow's tokens.

Each is stored under a fresh ref that only an expiring record names (the consent's
state, the ticket). When the flow completes it consumes the secret; when it is
abandoned (the user closed the provider's page, the setup page was never reloaded)
nothing did, and the secret stayed for good: on AWS a Secrets Manager secret billed
every month, for a ticket one holding a live refresh token. The record cannot be used
to find the ref later: it expires, and DynamoDB's TTL deletes it any time after.

So the ref is also *held* in the store (``store.secret_leases``) until a time past
the record's own expiry, and the scheduler's upkeep deletes each secret whose time
has come (:func:`delete_due_secrets`), then forgets the ref. The margin
(:data:`SECRET_MARGIN`) is there for a flow completing at its record's last moment,
read by one worker while another's clock runs ahead: the secret is still there, or
the flow is refused with "start the connection again" and nothing is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from ucf.stores.errors import StoreConfigError, StoreUnavailable
from ucf.stores.protocols import SecretLeaseStore
from ucf.stores.secrets.base import SecretNotFound, SecretRefError, SecretStore

__all__ = [
    "RETRY_AFTER",
    "SECRET_MARGIN",
    "SWEEP_LIMIT",
    "consume_secret",
    "delete_due_secrets",
    "keep_secret_until",
]

log = logging.getLogger("ucf.short_secrets")

SECRET_MARGIN: Final = timedelta(minutes=10)
"""How long past its record's expiry a short-lived secret is held before it may go."""
SWEEP_LIMIT: Final = 100
"""Secrets one look deletes at most; a full batch makes the next look come sooner."""
RETRY_AFTER: Final = timedelta(hours=1)
"""How long a secret that failed to delete waits, behind the others, to be tried again."""


async def keep_secret_until(
    secrets: SecretStore,
    leases: SecretLeaseStore,
    values: Mapping[str, str],
    *,
    until: datetime,
) -> str:
    """Store ``values`` under a new ref, held until ``until``; the ref.

    Should holding fail (the store unavailable), the secret is deleted again: a secret
    nobody holds would never be found."""
    ref = await secrets.put(None, values)
    try:
        await leases.hold(ref, until=until)
    except BaseException:
        try:
            await secrets.delete(ref)
        except Exception:
            log.warning("a short-lived secret could not be deleted after its hold failed")
        raise
    return ref


async def consume_secret(
    secrets: SecretStore, leases: SecretLeaseStore, ref: str
) -> dict[str, str] | None:
    """The secret under ``ref``, deleted as it is read (None: it is gone already, deleted
    by the upkeep), then no longer held. Deleted before it is let go of: a crash between
    the two leaves a hold whose secret the upkeep finds deleted, never a secret unheld.

    A delete (or release) that fails is left to the upkeep, which deletes the secret at
    its time as long as it is held: the flow's record is taken already, so failing the
    flow for it had its user consent again, for a secret that goes anyway."""
    try:
        values = dict(await secrets.get(ref))
    except SecretNotFound:
        values = None
    except BaseException:
        await _let_go(secrets, leases, ref)
        raise
    await _let_go(secrets, leases, ref)
    return values


async def _let_go(secrets: SecretStore, leases: SecretLeaseStore, ref: str) -> None:
    """Delete the secret under ``ref``, then release its hold; a failure is logged, the
    hold kept for the upkeep (:func:`delete_due_secrets`)."""
    try:
        await secrets.delete(ref)
        await leases.release(ref)
    except Exception:
        log.warning(
            "a short-lived secret used by its flow could not be deleted or let go of now; "
            "the upkeep deletes it past its time",
            exc_info=True,
        )


async def delete_due_secrets(
    secrets: SecretStore,
    leases: SecretLeaseStore,
    *,
    now: datetime,
    limit: int = SWEEP_LIMIT,
) -> tuple[int, bool]:
    """Delete the held secrets whose time has come, up to ``limit``, each before its hold;
    how many, and whether more may be due (the batch was full).

    Deleting one already gone is fine (its flow consumed it and crashed before letting
    go, or another worker's upkeep got there first). One that fails to delete is held
    again until :data:`RETRY_AFTER` from now: the due list is read earliest first, and
    left where it was, a batch of secrets that cannot be deleted (a policy denying it)
    would be all every look tried, the ones due after them kept for good. The secret
    store unavailable (down, throttled past its retries, refusing this role) or unusable
    as configured (it fails to open), the look stops at that first failure: each
    further delete would wait out its own retries, a hundred of them longer than the
    AWS schedule function's minute, whose sources' upkeep comes after this. A ref this
    secret store cannot address (the store was moved to another backend) is let go of,
    as nothing here can delete it. The due list is read first, so a look with nothing
    due costs one store read and never reaches the secret store."""
    refs = await leases.due(now=now, limit=limit)
    deleted = 0
    stopped = False
    for ref in refs:
        try:
            await secrets.delete(ref)
        except SecretRefError:
            log.warning("a short-lived secret's ref is not one this secret store can address")
        except Exception as error:
            log.exception("deleting a short-lived secret past its time failed; tried again later")
            try:
                await leases.hold(ref, until=now + RETRY_AFTER)
            except Exception:
                log.exception("a short-lived secret that failed to delete could not be put back")
            if isinstance(error, StoreUnavailable | StoreConfigError):
                stopped = True
                break
            continue
        else:
            deleted += 1
        await leases.release(ref)
    if deleted:
        log.info("deleted %d short-lived secret(s) their flow never used", deleted)
    return deleted, not stopped and len(refs) >= limit
