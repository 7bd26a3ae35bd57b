"""The container's start-up: resources built once, the garbage collector paused only while building."""

from __future__ import annotations

import contextlib
import gc

import pytest

from ucf.aws.container import Container


def test_a_build_runs_with_the_collector_paused_and_it_is_always_switched_back_on() -> None:
    container = Container("gc-test", environ={})
    seen: list[bool] = []

    async def build(stack: contextlib.AsyncExitStack) -> str:
        seen.append(gc.isenabled())
        return "built"

    async def throttled(stack: contextlib.AsyncExitStack) -> str:
        seen.append(gc.isenabled())
        raise RuntimeError("Secrets Manager throttled the cold start")

    try:
        assert container.run(lambda: container.once("resource", build)) == "built"
        assert gc.isenabled()
        with pytest.raises(RuntimeError, match="throttled"):
            container.run(lambda: container.once("other", throttled))
        assert gc.isenabled()  # a failed build must not leave the environment without gc
        assert container.run(lambda: container.once("resource", build)) == "built"  # kept
    finally:
        container.close()

    assert seen == [False, False]


def test_a_host_that_switched_the_collector_off_keeps_it_off() -> None:
    container = Container("gc-off-test", environ={})

    async def build(stack: contextlib.AsyncExitStack) -> bool:
        return gc.isenabled()

    gc.disable()
    try:
        assert container.run(lambda: container.once("resource", build)) is False
        assert not gc.isenabled()
    finally:
        gc.enable()
        container.close()
