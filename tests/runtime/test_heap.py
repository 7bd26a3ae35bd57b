"""freeze_startup_heap: what is alive at start-up leaves the collector; later garbage does not."""

from __future__ import annotations

import gc
import weakref


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_start_up_objects_are_frozen_and_later_cycles_are_still_collected() -> None:
    from ucf.runtime.heap import freeze_startup_heap

    before = _Node()
    freeze_startup_heap()
    try:
        assert gc.get_freeze_count() > 0
        assert not any(o is before for o in gc.get_objects())  # frozen: never rescanned
        later = _Node()
        gone = weakref.ref(later)
        del later
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
