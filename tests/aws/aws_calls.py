"""The AWS calls a process makes, for tests that hold a cold start to its round trips.

On AWS every DynamoDB or Secrets Manager call is a network round trip, so a
first invocation's calls, and which of them run side by side, matter more in
production than a few milliseconds of CPU. :func:`record` makes every botocore
client created afterwards note each call it makes (service, operation and the
kind of item it names, never a value or a secret) through botocore's own
events (``before-parameter-build``, ``after-call``).

*Together*: ``record(together=[("GetItem CONNECTOR/DESCRIPTOR", "PutItem DEDUP/DEDUP")])``
makes the first call of each group wait, on its own thread, for the other
ones to start (a name given twice stands for two calls of that kind) (up to ``patience`` seconds), so a test can tell calls made side
by side from calls made one after the other without timing them: a group
whose calls came one after the other is reported in :data:`APART` after
waiting out the patience. Nothing is timed when the code is right.

*During*: ``record(during={"GetItem CONNECTOR/DESCRIPTOR": "ucf.service.poll"})`` holds
the first such call, on its own thread, until the process has imported that module
(up to ``patience`` seconds): the call must have started before the import, and the
process must go on to the import while it waits for the call. A call that started
after the import, or whose process waited for it first, is reported in
:data:`NOT_DURING`.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CALLS: list[str] = []
"""Each call as ``"Operation KIND"`` (``GetItem CONNECTOR/DESCRIPTOR``, ``GetSecretValue``…),
in start order."""
APART: list[tuple[str, ...]] = []
"""The groups of :func:`record`'s ``together`` whose calls were not in flight at once."""
NOT_DURING: list[str] = []
"""The calls of :func:`record`'s ``during`` not in flight while their module was imported."""

_lock = threading.Lock()


def describe(operation: str, params: dict[str, Any]) -> str:
    """``GetItem CONNECTOR/DESCRIPTOR`` for a GetItem of ``PK = CONNECTOR#…, SK = DESCRIPTOR``:
    the operation and the kind of its item (each key's part before ``#``)."""
    key = params.get("Key") or params.get("Item")
    if isinstance(key, dict) and isinstance(key.get("PK"), dict):
        kinds = [str(next(iter(key[part].values()))).split("#", 1)[0] for part in ("PK", "SK")]
        return f"{operation} {'/'.join(kinds)}"
    if "RequestItems" in params:
        sizes = [len(v) for v in params["RequestItems"].values() if isinstance(v, list)]
        return f"{operation} {'+'.join(map(str, sizes))}" if sizes else operation
    return operation


class _Group:
    """Calls that must be in flight at once; a name given twice stands for two such calls."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.missing = Counter(names)
        self.started = False
        self.complete = threading.Event()

    def arrive(self, name: str) -> bool:
        """Counts ``name`` in if the group still waits for one; True when it is the first."""
        if self.missing[name] <= 0:
            return False
        self.missing[name] -= 1
        first, self.started = not self.started, True
        if not +self.missing:
            self.complete.set()
        return first


def _held_until_imported(call: str, module: str, patience: float) -> None:
    """Hold ``call`` (on its thread) until ``module`` is imported; note it if it was not
    imported while the call waited."""
    if module in sys.modules:
        with _lock:
            NOT_DURING.append(call)
        return
    imported = threading.Event()
    waited = 0.0
    while module not in sys.modules and waited < patience:  # polled: imports have no hook
        imported.wait(0.005)
        waited += 0.005
    if module not in sys.modules:
        with _lock:
            NOT_DURING.append(call)


def record(
    together: Iterable[Sequence[str]] = (),
    patience: float = 10.0,
    during: Mapping[str, str] | None = None,
) -> None:
    """Note every call of the clients created from now on (see the module's docstring)."""
    import botocore.session

    groups = [_Group(names) for names in together]
    pending = dict(during or {})
    original = botocore.session.Session.create_client

    def before(params: dict[str, Any], model: Any, **_: Any) -> None:
        name = describe(model.name, params)
        waiting: _Group | None = None
        with _lock:
            CALLS.append(name)
            module = pending.pop(name, None)
        if module is not None:
            _held_until_imported(name, module, patience)
        with _lock:
            for group in groups:
                if group.complete.is_set() or group.missing[name] <= 0:
                    continue
                if group.arrive(name) and not group.complete.is_set():
                    waiting = group
                break
        if waiting is not None and not waiting.complete.wait(patience):
            with _lock:
                APART.append(waiting.names)

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-parameter-build", before)
        return client

    botocore.session.Session.create_client = create_client
