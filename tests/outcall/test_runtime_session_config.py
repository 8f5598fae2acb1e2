"""A campaign call gets the campaign's calling window and the callee's zone (call-backs clamp into it)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from engine.campaign.calendar import CallingHours
from engine.campaign.contacts import Contact
from engine.campaign.scheduler import CampaignConfig
from outcall.runtime import session_config_for


def _cfg(hours: CallingHours) -> CampaignConfig:
    return CampaignConfig(name="c", dialplan="trial-class-zh", timezone="Asia/Shanghai", hours=hours)


def test_window_and_zone_come_from_the_campaign_and_the_contact() -> None:
    hours = CallingHours(
        weekdays={d: [(time(10, 0), time(12, 0)), (time(14, 0), time(18, 30))] for d in range(7)}
    )
    c = Contact(campaign="c", phone="+14155550100", timezone="America/Los_Angeles")
    sc = session_config_for(_cfg(hours), c, datetime(2026, 3, 2, 18, 0, tzinfo=UTC))  # a Monday
    assert sc.tz == ZoneInfo("America/Los_Angeles")
    assert sc.calling_window == (time(10, 0), time(18, 30))  # first start .. last end of that local day


def test_the_callee_local_day_picks_the_weekday_windows() -> None:
    hours = CallingHours(
        weekdays={**{d: [(time(9, 0), time(21, 0))] for d in range(5)}, 5: [(time(10, 0), time(16, 0))]}
    )
    c = Contact(campaign="c", phone="+8613812345678")  # no zone column: the number's region (Shanghai)
    # Friday 20:00 UTC is Saturday 04:00 in Shanghai: Saturday's window applies
    sc = session_config_for(_cfg(hours), c, datetime(2026, 3, 6, 20, 0, tzinfo=UTC))
    assert sc.tz == ZoneInfo("Asia/Shanghai")
    assert sc.calling_window == (time(10, 0), time(16, 0))


def test_a_day_without_windows_keeps_the_default_window() -> None:
    hours = CallingHours(weekdays={d: [(time(9, 0), time(20, 0))] for d in range(5)})  # no weekend calls
    c = Contact(campaign="c", phone="+8613812345678")
    sc = session_config_for(_cfg(hours), c, datetime(2026, 3, 7, 4, 0, tzinfo=UTC))  # Saturday
    assert sc.calling_window == (time(9, 0), time(20, 0))


def test_recording_needs_a_notice_and_switches_it_on() -> None:
    import pytest

    import dialplans
    from engine.dialog.runner import Runner, Say
    from engine.errors import ConfigError
    from outcall.runtime import with_recording

    plan = dialplans.get("trial-class-zh")
    assert with_recording(plan, False) == (plan, False)
    recorded, on = with_recording(plan, True)
    opening = [a.text for a in Runner(recorded).start() if isinstance(a, Say)]
    assert on and opening[1] == "本次通话可能会录音。"  # disclosure, then the notice, then the question
    bare = plan.model_copy(update={"preamble": plan.preamble.model_copy(update={"recording_notice": None})})
    with pytest.raises(ConfigError, match="no recording notice"):
        with_recording(bare, True)
    always = dialplans.get("dental-noshow-zh")  # a plan that records on its own
    assert with_recording(always, False)[1] is always.preamble.recording
