import asyncio

import pytest

from engine.call.state import CallState, CallStateMachine, IllegalTransition
from engine.clock import VirtualClock


async def test_virtual_clock_wakes_in_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, s: float) -> None:
        await clock.sleep(s)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper("b", 2.0)), asyncio.create_task(sleeper("a", 1.0))]
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(2.0)
    assert woke == [("a", 1.0), ("b", 2.0)]
    assert clock.monotonic() == 2.5
    await asyncio.gather(*tasks)


def test_state_table() -> None:
    sm = CallStateMachine()
    for s in (CallState.DIALING, CallState.RINGING, CallState.EARLY_MEDIA, CallState.ANSWERED):
        sm.to(s)
    assert sm.answered
    sm.to(CallState.CONVERSING)
    sm.to(CallState.ENDING)
    sm.to(CallState.DONE)
    assert sm.finished
    with pytest.raises(IllegalTransition):
        CallStateMachine(CallState.ANSWERED).to(CallState.FAILED)
    with pytest.raises(IllegalTransition):
        CallStateMachine(CallState.QUEUED).to(CallState.ANSWERED)
