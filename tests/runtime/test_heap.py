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


def test_serving_collects_the_young_generation_less_often_and_keeps_the_older_ratios() -> None:
    from ucf.runtime.heap import SERVING_YOUNG_THRESHOLD, serve_with_fewer_collections

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        serve_with_fewer_collections()
        assert gc.get_threshold() == (SERVING_YOUNG_THRESHOLD, 10, 10)
        assert SERVING_YOUNG_THRESHOLD > 700
        cycle = _Node()
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert gone() is None  # cycles are still collected
    finally:
        gc.set_threshold(*saved)
