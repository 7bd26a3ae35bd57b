"""The connector catalogue as users see it: shipped and custom descriptors (SPEC §5.2, §8.1).

Descriptors are validated in full before they are stored, and compiled once per
stored version: every poll and webhook of a connector reuses the same compiled
mapping, verifier and poll plan until the descriptor changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ucf.catalogue import builtin_descriptor, builtin_descriptors
from ucf.core.records import datarecord
from ucf.runtime.poll_schedule import PollSchedule, declared_schedule, stored_schedule
from ucf.service.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PreconditionFailed,
    ValidationFailed,
)
from ucf.stores.errors import AlreadyExists, Changed, InvalidRecord, NotFound
from ucf.stores.models import (
    DescriptorRecord,
    DescriptorVersion,
    credential_part,
    descriptor_identity,
    is_newer_version,
    next_version,
)
from ucf.stores.protocols import DescriptorRegistry, InstanceStore

if TYPE_CHECKING:
    from ucf.core.descriptor import ConnectorDescriptor
    from ucf.core.descriptor_view import ConnectorView
    from ucf.core.mapping import CompiledMapping
    from ucf.core.validation import Problem
    from ucf.runtime.sources import Source
    from ucf.stores.reports import SyncReport

log = logging.getLogger(__name__)

# The mapping engine, the validator and the sources (with the HTTP stack) are imported
# where a connector is compiled, validated or run: listing the catalogue and deciding
# what is due needs none of them (the AWS schedule function: bench/coldstart.py).


class Connector:
    """A descriptor, parsed on first use, with its compiled parts made on first use.

    Built from a parsed :class:`ConnectorDescriptor`, or from the JSON the
    store holds (validated in full when it was stored): then it is parsed
    the first time something reads :attr:`descriptor`. Deciding which
    instances are due reads only the id, the kind and the polling interval,
    which the stored JSON gives without the descriptor models: the AWS
    schedule function loads neither them nor pydantic (``bench/coldstart.py``).
    """

    def __init__(
        self,
        descriptor: ConnectorDescriptor | Mapping[str, Any],
        built_in: bool,
        created_at: datetime,
        updated_at: datetime,
    ) -> None:
        if isinstance(descriptor, Mapping):
            self._stored: Mapping[str, Any] | None = descriptor
        else:
            self._stored = None
            self.__dict__["descriptor"] = descriptor
        self.built_in = built_in
        self.created_at = created_at
        self.updated_at = updated_at
        self._extras: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"Connector({self.id!r}, built_in={self.built_in}, updated_at={self.updated_at})"

    @cached_property
    def descriptor(self) -> ConnectorDescriptor:
        from ucf.core.descriptor import ConnectorDescriptor

        return ConnectorDescriptor.model_validate(self._stored)

    @property
    def id(self) -> str:
        if self._stored is not None:
            return str(self._stored["id"])
        return self.descriptor.id

    @property
    def stored(self) -> dict[str, Any]:
        """The descriptor as the store holds it (JSON), to be kept and read again."""
        if self._stored is not None:
            return dict(self._stored)
        return _stored_form(self.descriptor)

    @property
    def version(self) -> str:
        if self._stored is not None:
            return str(self._stored.get("version", ""))
        return self.descriptor.version

    @property
    def etag(self) -> str:
        """The stored version's entity tag (:func:`entity_tag`), quoted, for HTTP."""
        return entity_tag(self.version, self.updated_at)

    @property
    def kind(self) -> str:
        """``generic`` (descriptor-driven) or ``native`` (code in a package)."""
        if self._stored is not None:
            return str(self._stored["kind"])
        return self.descriptor.kind

    @cached_property
    def view(self) -> ConnectorView:
        """What running the connector reads (webhook spec, mappings), without the models.

        Loaded straight from the stored JSON, which was validated in full when it
        was written: a delivery then needs neither pydantic nor the descriptor
        models (about 95 ms of a Lambda cold start). Stored JSON the plain loader
        cannot read is parsed with the models instead, whose error says what is
        wrong; a parsed descriptor's view is read off it.
        """
        from ucf.core.descriptor_view import ViewUnavailable, connector_view, load_connector_view

        if self._stored is not None and "descriptor" not in self.__dict__:
            try:
                return load_connector_view(self._stored)
            except ViewUnavailable as error:
                log.warning(
                    "connector %s: its stored descriptor is read with the models (%s)",
                    self._stored.get("id"),
                    error,
                )
        return connector_view(self.descriptor)

    @cached_property
    def mapping(self) -> CompiledMapping | None:
        from ucf.core.mapping import compile_mapping

        mapping = self.view.field_mapping
        return compile_mapping(mapping) if mapping is not None else None

    @cached_property
    def webhook_mapping(self) -> CompiledMapping | None:
        mapping = self.view.webhook_mapping()
        if mapping is None:
            return None
        if mapping is self.view.field_mapping:
            return self.mapping
        from ucf.core.mapping import compile_mapping

        return compile_mapping(mapping)

    @cached_property
    def source(self) -> Source:
        """The connector's runtime, built once per descriptor version.

        Raises :class:`~ucf.runtime.sources.NativeSourceMissing` for a native
        connector whose package is missing or broken (not cached: installing it
        and restarting is the fix, and a later call tries again).
        """
        from ucf.runtime.sources import GenericSource, source_for

        if self.kind == "native":
            return source_for(self.descriptor)
        return GenericSource(self.view, self.mapping)  # no descriptor models for a poll

    @property
    def schedule(self) -> PollSchedule | None:
        """How often it polls, as its source declares; None for webhook-only connectors.

        A native connector whose package cannot be loaded is still scheduled
        (at the default interval), so its instances report the reason in
        their health instead of silently never polling. A descriptor-driven
        one's is its ``ingestion.polling`` block, read without compiling its
        source (the scheduler looks at every connector; few of them poll).
        """
        if self.kind != "native":
            if self._stored is not None:
                return stored_schedule(self._stored)
            return declared_schedule(self.descriptor)
        from ucf.runtime.sources import NativeSourceMissing

        try:
            return self.source.schedule
        except NativeSourceMissing:
            return PollSchedule()

    @property
    def polls(self) -> bool:
        return self.schedule is not None

    @property
    def receives_webhooks(self) -> bool:
        """Generic: the descriptor has a webhook block and a mapping for it; native: its
        source has a webhook handler."""
        if self.kind != "native":
            return self.view.webhook is not None and self.webhook_mapping is not None
        from ucf.runtime.sources import NativeSourceMissing

        try:
            return self.source.webhooks is not None
        except NativeSourceMissing:
            return False

    def compiled(self, name: str, build: Callable[[ConnectorView], Any]) -> Any:
        """Another compiled part (the verifier), built from :attr:`view` once per
        descriptor version."""
        if name not in self._extras:
            self._extras[name] = build(self.view)
        return self._extras[name]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.descriptor.to_json(),
            "builtIn": self.built_in,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


def entity_tag(version: str, saved_at: datetime) -> str:
    """What identifies one stored version of a descriptor, as an HTTP strong entity tag
    (RFC 9110 §8.8.3, quoted): its ``version`` and when it was saved, hashed.

    The version alone is not enough (an edit that only raised a lower version is no
    change, and a built-in's upgrade keeps its id's history apart), and the stamp alone
    reads as a time a client might compare; every write stamps ``updated_at`` to the
    microsecond, so two stored versions never share a tag. Hashed, because a version is
    any string and a tag may not hold a quote, a space or a control character.
    """
    digest = hashlib.sha256(f"{version}\x00{saved_at.isoformat()}".encode()).hexdigest()
    return f'"{digest[:32]}"'


def _check_if_match(
    connector_id: str, version: str, saved_at: datetime, if_match: Collection[str] | None
) -> None:
    """Refuse a write whose ``If-Match`` names none of the stored version's tags (412,
    naming the version there now). None: no precondition (no header, or ``*``)."""
    if if_match is None:
        return
    current = entity_tag(version, saved_at)
    if current not in if_match:
        raise PreconditionFailed(
            f"'{connector_id}' is at version {version} now (ETag {current}), not the one "
            "this request's If-Match names: another edit was saved since it was read; "
            "GET it again and repeat the edit",
            {"version": version, "etag": current},
        )


def _parse(data: Any, what: str) -> ConnectorDescriptor:
    from ucf.core.validation import validate_descriptor

    descriptor, problems = validate_descriptor(data)
    if descriptor is None or problems:
        raise ValidationFailed.from_problems(f"{what} is not a valid descriptor", problems)
    return descriptor


def runnable_problem(descriptor: ConnectorDescriptor) -> Problem | None:
    """Why a ``kind: native`` descriptor cannot run here (no installed package provides
    its id, or it failed to load), at ``kind``; None for any other descriptor.

    A native connector's polls and mapping are code that comes with its id's
    entry point; stored under an id nothing provides, it would list in the
    catalogue and fail every poll and delivery. The CLI's and the editor's copy
    of a native connector warn about that; a user writing through the API (or
    saving the copy anyway) is told when saving, and the editor's validation
    (``/api/connectors/validate``) says it as the user types. The shipped and
    installed native connectors pass: their packages are there.
    """
    if descriptor.kind != "native":
        return None
    from ucf.core.validation import Problem
    from ucf.runtime.native import native_registry

    why = native_registry().missing(descriptor.id)
    if why is None:
        return None
    return Problem(
        "kind",
        why,
        "a native connector runs code from an installed Python package "
        "(docs/writing-a-native-connector.md): install it and restart ucf first, or make this "
        'a descriptor connector ("kind": "generic", with its ingestion and fieldMapping)',
    )


def _check_runnable(descriptor: ConnectorDescriptor) -> None:
    """Refuse to store a descriptor that could never run (:func:`runnable_problem`)."""
    problem = runnable_problem(descriptor)
    if problem is not None:
        raise ValidationFailed.from_problems("the connector cannot run here", [problem])


def _stored_form(descriptor: ConnectorDescriptor) -> dict[str, Any]:
    """A validated descriptor as it is stored (shipped, registered or updated): as the
    models read it, not as it was written.

    The delivery and poll paths read the stored JSON without the models
    (:mod:`ucf.core.descriptor_view`), which take the JSON as it is: a value the
    models coerce (``"5"`` for 5, ``"false"`` for False) or a key given by field
    name must not reach them. Only the keys given are written (``exclude_unset``,
    not the API's ``exclude_defaults``): a ``rateLimitPerMinute`` given at its
    default still overrides the server's setting.
    """
    dumped: dict[str, Any] = descriptor.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return dumped


def _would_write(data: Mapping[str, Any], stored: Mapping[str, DescriptorRecord]) -> bool:
    """Whether syncing ``data`` writes it, given the store's records (as the registries decide)."""
    try:
        connector_id, version = descriptor_identity(data)
    except InvalidRecord:  # no id: validation says what is wrong
        return True
    current = stored.get(connector_id)
    if current is None:
        return True
    return current.built_in and is_newer_version(version, current.version)


def _without_version(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in descriptor.items() if key != "version"}


@datarecord
class Edited:
    """What :meth:`ConnectorService.edit` stored."""

    connector: Connector
    changed: bool
    """False when the edit was the stored descriptor again: nothing was written."""
    given_version: str
    """The version the edit gave; the stored one differs when ucf raised it."""

    @property
    def version_raised(self) -> bool:
        return self.changed and self.connector.descriptor.version != self.given_version


def _changed_meanwhile(connector_id: str) -> ConflictError:
    return ConflictError(
        f"'{connector_id}' was changed by someone else while this edit was made "
        "(its version is now another): load it again and repeat the edit"
    )


class ConnectorService:
    def __init__(
        self,
        registry: DescriptorRegistry,
        instances: InstanceStore,
        clock: Callable[[], datetime],
    ) -> None:
        self._registry = registry
        self._instances = instances
        self._clock = clock
        self._cache: dict[str, Connector] = {}
        self._synced = False
        self._sync_lock = asyncio.Lock()
        self._current_ids: set[str] = set()
        """Shipped connectors found stored as a sync would leave them (see :meth:`_current`)."""
        self._upgrade_hooks: list[Callable[[Connector, Connector], Awaitable[object]]] = []

    def on_upgrade(self, hook: Callable[[Connector, Connector], Awaitable[object]]) -> None:
        """Await ``hook(connector, before)`` for each shipped connector a sync upgrades,
        ``before`` being the one it replaced: an upgrade is an edit nobody made, and what
        an edit does to the instances (their unused credentials deleted, their sign-in
        method recorded where the edit moved it) was not done. The context wires it to
        :meth:`~ucf.service.instances.InstanceService.drop_unused_credentials`: this
        service knows no instance's credentials."""
        self._upgrade_hooks.append(hook)

    async def ready(self) -> None:
        """Sync the shipped catalogue once, if :meth:`sync_builtin` has not run yet.

        Every read and write of the catalogue waits for it, so a process that
        opened its context on demand (a Lambda function) syncs on its first
        look at a connector, and one that never looks never pays for it.
        """
        if self._synced:
            return
        async with self._sync_lock:
            if not self._synced:
                await self.sync_builtin()

    async def sync_builtin(self) -> SyncReport:
        """Load the shipped catalogue: new ones inserted, upgraded when their version rose.

        One read of the registry first: a shipped descriptor the store already
        holds at that version or a later one (or that a custom descriptor
        shadows) is left alone without another round trip, and only the ones
        to write are validated in full and handed to the registry, which
        decides again under its own compare-and-set. The stored copies were
        validated when they were written; validating the whole catalogue
        (every JSONPath of every mapping compiled) and a read per descriptor on
        each start were most of what a Lambda cold start spent here
        (``bench/coldstart.py``). Should a custom descriptor that shadows a
        shipped one be deleted between the read and the write, the shipped
        one is inserted at the next start.
        """
        from ucf.runtime.native import installed_descriptors

        shipped = builtin_descriptors()
        catalogued = {str(data.get("id")) for data in shipped}
        # Native packages installed beside ucf bring their descriptors with them; the
        # ones shipped in the catalogue are not imported for it (a cold start pays for
        # a connector's code only when one of its instances runs).
        shipped += [dict(d) for d in installed_descriptors(besides=catalogued)]
        stored = {record.connector_id: record for record in await self._registry.list_all()}
        pending = [
            _stored_form(_parse(data, f"built-in descriptor {data.get('id')!r}"))
            for data in shipped
            if _would_write(data, stored)
        ]
        written = await self._registry.sync_builtin(pending, now=self._clock()) if pending else None
        left = [stored[str(data.get("id"))] for data in shipped if not _would_write(data, stored)]
        self._synced = True  # before the hooks: one that reads a connector waits for nothing
        for connector_id in written.upgraded if written and self._upgrade_hooks else ():
            await self._upgraded(stored[connector_id])
        from ucf.stores.reports import SyncReport  # built here alone: a sync at start

        return SyncReport(
            inserted=written.inserted if written else (),
            upgraded=written.upgraded if written else (),
            unchanged=(written.unchanged if written else ())
            + tuple(r.connector_id for r in left if r.built_in),
            shadowed=(written.shadowed if written else ())
            + tuple(r.connector_id for r in left if not r.built_in),
        )

    async def _upgraded(self, replaced: DescriptorRecord) -> None:
        """Run the upgrade hooks for the shipped connector that replaced ``replaced``.

        The upgrade is stored whatever they do: a hook that fails is logged, not raised,
        since the start (or the request that synced) has nothing to repair. No later
        start or edit does that work (an edit's ``before`` is the upgraded version): the
        context's hook remembers it until done, and the scheduler's daily job does it
        again (:meth:`~ucf.service.context.UcfContext.finish_upgrades`)."""
        record = await self._registry.get(replaced.connector_id)
        if record is None:
            return
        before = Connector(
            replaced.descriptor,
            built_in=replaced.built_in,
            created_at=replaced.created_at,
            updated_at=replaced.updated_at,
        )
        for hook in self._upgrade_hooks:
            try:
                await hook(self._connector(record), before)
            except Exception:
                log.exception("after the upgrade of '%s'", replaced.connector_id)

    def _connector(self, record: DescriptorRecord) -> Connector:
        """The compiled connector of ``record``, reused while its ``updated_at`` is the same.

        Every write of a descriptor stamps ``updated_at`` from the clock to the
        microsecond, and both stores keep all of it (:func:`~ucf.stores.models.text_time`),
        so two edits never share a stamp and an edit made by another process is seen
        at the next read; a clock that stood still would serve the older copy.
        """
        cached = self._cache.get(record.connector_id)
        if cached is not None and cached.updated_at == record.updated_at:
            return cached
        connector = Connector(
            record.descriptor,  # parsed when first read
            built_in=record.built_in,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
        self._cache[record.connector_id] = connector
        return connector

    async def list(
        self, *, category: str | None = None, query: str | None = None
    ) -> list[Connector]:
        """The catalogue, filtered. Every connector a user added counts as "Custom" too,
        whatever category it names, so the Custom filter finds what the user made."""
        await self.ready()
        needle = (query or "").strip().lower()
        connectors = [self._connector(r) for r in await self._registry.list_all()]
        return [
            c
            for c in connectors
            if (
                category is None
                or c.descriptor.category == category
                or (category == "Custom" and not c.built_in)
            )
            and (
                not needle
                or needle in c.descriptor.name.lower()
                or needle in c.descriptor.id
                or needle in c.descriptor.description.lower()
            )
        ]

    async def get(self, connector_id: str) -> Connector:
        record = await self._current(connector_id)
        if record is None:
            raise NotFoundError(f"no connector '{connector_id}'")
        return self._connector(record)

    async def find(self, connector_id: str) -> Connector | None:
        """The connector ``connector_id`` names; None when there is none, or when the id
        cannot even be a key in the store (one taken from a URL: the webhook gateway
        answers both with the same 404).

        Read as :meth:`get` reads it: a shipped connector stored as a sync would leave
        it is read alone, so a webhook delivery to it (the first of a Lambda API
        function) syncs nothing. Any other id syncs the catalogue first, and that
        sync's own errors are raised, not taken for a missing connector.
        """
        record = await self._current(connector_id, read=self._read_if_valid)
        return self._connector(record) if record is not None else None

    async def _read_if_valid(self, connector_id: str) -> DescriptorRecord | None:
        try:
            return await self._registry.get(connector_id)
        except InvalidRecord:
            return None

    async def _current(
        self,
        connector_id: str,
        *,
        read: Callable[[str], Awaitable[DescriptorRecord | None]] | None = None,
    ) -> DescriptorRecord | None:
        """The stored record of ``connector_id``, as it is once the shipped catalogue is synced.

        Before this process's first sync, a shipped connector whose stored copy
        is already what a sync would leave (that version or a later one, or a
        custom descriptor shadowing it) is read alone: one read, not the whole
        catalogue's Query and the native connectors' entry-point scan (a Lambda
        poll worker reads one connector: ``bench/coldstart.py``). Anything else
        (an id no shipped file has, nothing stored, an older copy) syncs
        everything first, as every read did before.
        """
        read = read or self._registry.get
        if not self._synced and connector_id not in self._current_ids:
            shipped = builtin_descriptor(connector_id)
            if shipped is not None:
                record = await read(connector_id)
                if record is not None and not _would_write(shipped, {connector_id: record}):
                    self._current_ids.add(connector_id)
                    return record
            await self.ready()
        return await read(connector_id)

    async def register(self, data: Any) -> Connector:
        descriptor = _parse(data, "the request body")
        _check_runnable(descriptor)
        await self.ready()
        try:
            record = await self._registry.register(_stored_form(descriptor), now=self._clock())
        except AlreadyExists:
            raise ConflictError(f"a connector '{descriptor.id}' already exists") from None
        return self._connector(record)

    async def edit(
        self,
        connector_id: str,
        data: Any,
        *,
        if_saved_at: datetime | None = None,
        if_match: Collection[str] | None = None,
    ) -> Edited:
        """Replace a descriptor, raising its ``version`` when the edit changes it and the
        author did not; the replaced one stays readable (:meth:`versions`).

        Raised for them, not refused: the version is how stored copies, history and
        instances tell descriptors apart, and a PUT that changed the mapping but not the
        version left two different descriptors under one version with no record of the
        first. The dashboard's editor always raised it; an API script that edits its file
        without bumping the version gets the same, and the answer says what was stored.
        An edit that changes nothing but a lower version is no change: versions only
        rise. Two edits made from the same version: the second is a 409, not a second
        descriptor under the same raised version.

        ``if_saved_at``: the ``updated_at`` of the descriptor the edit was made on (the
        editor's page carries it); another edit saved since is a 409, not replaced by
        this one without a word.

        ``if_match``: the entity tags (:func:`entity_tag`) of the versions the edit may
        replace, from an API client's ``If-Match``; any other stored now is a 412
        (:class:`PreconditionFailed`). Checked against the record the write's own
        compare-and-set replaces, so an edit saved after the check is a 409 as above.
        """
        descriptor = _parse(data, "the request body")
        if descriptor.id != connector_id:
            raise ValidationFailed(
                f"the descriptor's id '{descriptor.id}' does not match '{connector_id}'"
            )
        _check_runnable(descriptor)
        await self.ready()
        current = await self._registry.get(connector_id)
        if current is None:
            raise NotFoundError(f"no connector '{connector_id}'")
        if if_saved_at is not None and current.updated_at != if_saved_at:
            raise _changed_meanwhile(connector_id)
        _check_if_match(connector_id, current.version, current.updated_at, if_match)
        stored = _stored_form(descriptor)
        given = str(stored.get("version", descriptor.version))
        changed = _without_version(stored) != _without_version(current.descriptor)
        if not is_newer_version(given, current.version):
            stored["version"] = next_version(current.version) if changed else current.version
        if stored == current.descriptor and not current.built_in:
            return Edited(self._connector(current), changed=False, given_version=given)
        try:
            record = await self._registry.update(
                connector_id,
                stored,
                now=self._clock(),
                built_in=False,
                if_saved_at=current.updated_at,
            )
        except NotFound:
            raise NotFoundError(f"no connector '{connector_id}'") from None
        except Changed:
            raise _changed_meanwhile(connector_id) from None
        return Edited(self._connector(record), changed=True, given_version=given)

    async def versions(self, connector_id: str) -> tuple[Connector, Sequence[DescriptorVersion]]:
        """The connector and the descriptors its edits replaced, newest first."""
        connector = await self.get(connector_id)
        return connector, await self._registry.versions(connector_id)

    async def earlier_descriptors(self, connector_id: str) -> Sequence[ConnectorDescriptor]:
        """The descriptors ``connector_id``'s edits replaced that still parse, newest
        first: which credentials an instance once signed in with (an earlier version's
        key, renamed or gone since), or verified its deliveries with.

        One for each way of signing in and verifying they declared (:func:`~ucf.stores.models.credential_part`),
        not one for each version: every PATCH that completes a sign-in (a key rotated, an
        OAuth reconnect) asks, and a connector edited hundreds of times, its sign-in
        rarely, parsed each of them again, ~1.7 ms of CPU each (300: half a second on the
        event loop, inside the instance's secret turn)."""
        parsed: list[ConnectorDescriptor] = []
        seen: set[str] = set()
        for earlier in await self._registry.versions(connector_id):
            part = credential_part(earlier.descriptor)
            if part in seen:
                continue
            with contextlib.suppress(ValidationFailed):
                parsed.append(_parse(earlier.descriptor, "an earlier version"))
                seen.add(part)  # one that does not parse leaves its part to the next
        return parsed

    async def version(self, connector_id: str, version: str) -> DescriptorVersion:
        """One earlier version by its ``version`` (the newest, should two share it)."""
        _, versions = await self.versions(connector_id)
        for found in versions:
            if found.version == version:
                return found
        raise NotFoundError(f"'{connector_id}' has no earlier version '{version}'")

    async def restore(
        self, connector_id: str, version: str, *, if_match: Collection[str] | None = None
    ) -> Edited:
        """Go back to an earlier version: stored as a new edit (its version raised above
        the current one), so the version it replaces stays readable in its turn.
        ``if_match`` as for :meth:`edit`."""
        earlier = await self.version(connector_id, version)
        return await self.edit(connector_id, earlier.descriptor, if_match=if_match)

    async def connected_in(self, connector_id: str) -> Sequence[str]:
        """The projects that have ``connector_id`` connected, sorted: a connector is
        deleted only once none has (its delete page names them before offering it)."""
        return sorted({i.project_id for i in await self._instances.list_by_connector(connector_id)})

    async def delete(self, connector_id: str, *, if_match: Collection[str] | None = None) -> None:
        """Delete a custom descriptor and its history. ``if_match`` as for :meth:`edit`,
        checked on the version read here, and the delete made only if that version is
        still the stored one (an edit saved between the two is a 409, not deleted)."""
        connector = await self.get(connector_id)
        _check_if_match(connector_id, connector.version, connector.updated_at, if_match)
        if connector.built_in:
            raise ForbiddenError(f"'{connector_id}' is built in and cannot be deleted")
        in_use = await self.connected_in(connector_id)
        if in_use:
            raise ConflictError(
                f"'{connector_id}' is still connected in project(s) {', '.join(in_use)}; "
                "disconnect first"
            )
        try:
            await self._registry.delete(
                connector_id, if_saved_at=None if if_match is None else connector.updated_at
            )
        except NotFound:
            raise NotFoundError(f"no connector '{connector_id}'") from None
        except Changed:
            raise _changed_meanwhile(connector_id) from None
        self._cache.pop(connector_id, None)
