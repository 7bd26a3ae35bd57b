"""The container's start-up: resources built once, the garbage collector paused while building
and through a first invocation."""

from __future__ import annotations

import asyncio
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


def test_a_first_invocation_runs_with_the_collector_paused_and_later_ones_with_it_on() -> None:
    """The first invocation still builds and imports what its job needs (the poll worker:
    ~5 ms of young collections that freed nothing); a warm one collects as usual."""
    container = Container("gc-cold-test", environ={})

    async def collector_on() -> bool:
        return gc.isenabled()

    try:
        assert container.run(collector_on) is False
        assert gc.isenabled()
        assert container.run(collector_on) is True
        container.close()  # a new execution environment: cold again
        assert container.run(collector_on) is False
        assert gc.isenabled()
    finally:
        container.close()


def test_a_first_invocation_that_fails_switches_the_collector_back_on() -> None:
    container = Container("gc-cold-fail-test", environ={})

    async def failing() -> None:
        raise RuntimeError("the store is not there")

    try:
        with pytest.raises(RuntimeError, match="not there"):
            container.run(failing)
        assert gc.isenabled()
    finally:
        container.close()


def test_a_long_first_invocation_collects_again_once_its_pause_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause is bounded: a first invocation working through a backlog must not pile
    up cyclic garbage for minutes. (Its length set to nothing: the loop's next turns.)"""
    from ucf.aws import container as module

    monkeypatch.setattr(module, "COLD_PAUSE_SECONDS", 0.0)
    container = Container("gc-cold-long-test", environ={})

    async def long_invocation() -> tuple[bool, bool]:
        at_start = gc.isenabled()
        for _ in range(100):  # the timer's turn comes within a few turns of the loop
            if gc.isenabled():
                break
            await asyncio.sleep(0)
        return at_start, gc.isenabled()

    async def build(stack: contextlib.AsyncExitStack) -> bool:
        return gc.isenabled()

    try:
        assert container.run(long_invocation) == (False, True)
        assert container.run(lambda: container.once("resource", build)) is False
        assert gc.isenabled()
    finally:
        container.close()


def test_a_host_that_switched_the_collector_off_keeps_it_off_through_a_first_invocation() -> None:
    container = Container("gc-cold-off-test", environ={})

    async def collector_on() -> bool:
        return gc.isenabled()

    gc.disable()
    try:
        assert container.run(collector_on) is False
        assert not gc.isenabled()
    finally:
        gc.enable()
        container.close()
