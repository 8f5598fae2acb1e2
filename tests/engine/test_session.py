import asyncio
from collections.abc import Sequence
from typing import Any

import dialplans
from engine.call.session import CallSession
from engine.clock import VirtualClock
from engine.dispositions import Disposition
from engine.outcome import CallOutcome
from tests.engine.fakes import KeywordClassifier, LengthRecognizer, ScriptedLeg, ToneSynth


async def _finish(session: CallSession, clock: VirtualClock, steps: int = 3000) -> CallOutcome:
    """Run the session on the virtual clock (20 ms steps) until it ends; fail if it does not."""
    task = asyncio.create_task(session.run())
    for _ in range(steps):
        if task.done():
            break
        await clock.advance(0.02)
    assert task.done(), f"session did not finish in {steps * 0.02:.0f} virtual seconds"
    return task.result()


async def _run(
    replies: Sequence[str | None],
    *,
    crash: bool = False,
    fail: Disposition | None = None,
    at_answer: str | None = None,
    timed: Sequence[tuple[float, str]] = (),
) -> tuple[CallOutcome, ToneSynth]:
    clock = VirtualClock()
    leg = ScriptedLeg(clock, replies, fail=fail, at_answer=at_answer, timed=timed)
    synth = ToneSynth()
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=LengthRecognizer(leg, crash=crash),
        classifier=KeywordClassifier(),
        synthesizer=synth,
        clock=clock,
    )
    return await _finish(session, clock), synth


async def test_price_then_yes_books_with_grade_b() -> None:
    o, synth = await _run(["多少钱啊", "好的可以"])
    assert o.disposition is Disposition.ANSWERED
    assert [t.node for t in o.turns if t.speaker == "bot"] == [None, "greet", "price", "confirm"]
    callee = [t for t in o.turns if t.speaker == "callee"]
    assert [(t.text, t.intent) for t in callee] == [("多少钱啊", "ask_price"), ("好的可以", "affirm")]
    assert all(t.start_s < (t.end_s or 0) for t in callee)
    assert o.tags == ["interested", "booked"]
    assert o.grade == "B" and o.grade_rule and o.grade_rule.startswith("B")
    assert o.hangup_by == "robot"
    assert "启明教育" in synth.rendered[0]


async def test_silence_reprompts_then_says_goodbye() -> None:
    o, _ = await _run([None, None])
    bot = [t for t in o.turns if t.speaker == "bot"]
    assert [t.node for t in bot] == [None, "greet", "greet", "goodbye_silent"]
    assert "no_response" in o.tags
    assert o.grade in ("C", "D")


async def test_stop_calling_global_ends_call_and_tags_dnc() -> None:
    o, _ = await _run(["别再打了"])
    assert "dnc" in o.tags
    assert o.turns[-1].speaker == "bot" and "不会再给您打电话" in o.turns[-1].text


async def test_unanswered_leg_gives_disposition_and_grade_e() -> None:
    o, _ = await _run([], fail=Disposition.BUSY)
    assert o.disposition is Disposition.BUSY and o.grade == "E" and o.sip_code == 486
    assert o.turns == []


async def test_recognizer_crash_ends_that_call_with_failed() -> None:
    o, _ = await _run(["好的"], crash=True)
    assert o.disposition is Disposition.FAILED
    assert o.error and "decoder exploded" in o.error
    assert o.hangup_by == "system"


async def test_voicemail_greeting_during_our_prompt_ends_with_voicemail() -> None:
    o, _ = await _run([], at_answer="您好，您拨打的用户暂时无法接听，请在提示音后留言")
    assert o.disposition is Disposition.VOICEMAIL
    assert [t.intent for t in o.turns if t.speaker == "callee"] == ["voicemail"]
    assert not any(t.node == "greet" and not t.interrupted for t in o.turns)
    assert o.hangup_by == "robot"


async def test_carrier_announcement_after_answer_maps_disposition() -> None:
    o, _ = await _run([], at_answer="您拨打的电话已关机")
    assert o.disposition is Disposition.POWERED_OFF


async def test_barge_in_with_words_cuts_the_prompt_and_answers_it() -> None:
    # the greet prompt starts ~1.0 s after answer and lasts ~2 s; the callee talks over it at 1.5 s
    o, _ = await _run([], timed=[(1.5, "好的可以")])
    greet = next(t for t in o.turns if t.node == "greet" and t.speaker == "bot")
    assert greet.interrupted
    full = "本周六上午有一节免费的少儿编程试听课，想邀请您带孩子来体验一下，您有兴趣吗？"
    assert 0 < len(greet.text) < len(full) and full.startswith(greet.text)
    callee = [t for t in o.turns if t.speaker == "callee"]
    assert [(t.text, t.intent) for t in callee] == [("好的可以", "affirm")]
    assert "booked" in o.tags


async def test_backchannel_does_not_interrupt() -> None:
    o, _ = await _run(["好的可以"], timed=[(1.5, "嗯")])
    greet = next(t for t in o.turns if t.node == "greet" and t.speaker == "bot")
    assert not greet.interrupted
    assert greet.text.endswith("您有兴趣吗？")
    assert [t.intent for t in o.turns if t.speaker == "callee"] == ["backchannel", "affirm"]
    assert "booked" in o.tags


async def test_stop_request_over_the_disclosure_is_acted_on() -> None:
    o, _ = await _run([], timed=[(0.2, "别再打了")])
    pre = o.turns[0]
    assert pre.speaker == "bot" and pre.node is None and not pre.interrupted  # disclosure not cut
    assert "dnc" in o.tags


async def _run_plan(
    plan_text: str,
    replies: Sequence[str | None],
    *,
    timed: Sequence[tuple[float, str]] = (),
    prompt_audio: object = None,
) -> tuple[CallOutcome, ToneSynth]:
    from engine.dialog.loader import parse

    plan, problems = parse(plan_text, "t.yaml")
    assert plan is not None and not [x for x in problems if x.is_error], problems
    clock = VirtualClock()
    leg = ScriptedLeg(clock, replies, timed=timed)
    synth = ToneSynth()
    session = CallSession(
        leg,
        plan,
        recognizer=LengthRecognizer(leg),
        classifier=KeywordClassifier(),
        synthesizer=synth,
        clock=clock,
        prompt_audio=prompt_audio,  # type: ignore[arg-type]
    )
    return await _finish(session, clock), synth


MIN_PLAY = """
name: t
start: q
nodes:
  q:
    type: ask
    say: 这是一个比较长的问题，用来测试最短播放时间，您看可以吗？
    min_play_s: {min_play}
    branches: [{{intent: affirm, goto: ok}}]
    default: nope
  ok: {{type: hangup, say: 好, tag: ok}}
  nope: {{type: hangup, say: 不, tag: nope}}
"""


async def test_min_play_s_holds_off_barge_in() -> None:
    # the prompt plays from 0 s for ~1.7 s; the callee talks over it at 0.5 s
    o, _ = await _run_plan(MIN_PLAY.format(min_play=0), [], timed=[(0.5, "好的可以")])
    q = next(t for t in o.turns if t.node == "q" and t.speaker == "bot")
    assert q.interrupted and "ok" in o.tags
    o, _ = await _run_plan(MIN_PLAY.format(min_play=1.0), ["好的可以"], timed=[(0.5, "好的我可以的")])
    q = next(t for t in o.turns if t.node == "q" and t.speaker == "bot")
    assert not q.interrupted and q.text.endswith("您看可以吗？")
    assert "ok" in o.tags


async def test_outcome_keeps_no_match_words_for_the_inbox() -> None:
    o, _ = await _run(["随便聊聊", None, None])
    assert o.variables["no_match"] == [
        {"node": "greet", "text": "随便聊聊", "intent": "other", "confidence": 0.9}
    ]
    assert "no_response" in o.tags


async def test_recorded_wav_prompt_is_played_instead_of_synthesis() -> None:
    from tests.engine.fakes import tone

    loaded: list[str] = []

    async def load(path: str) -> object:
        loaded.append(path)
        return tone(0.5)

    plan = "name: t\nstart: q\nnodes:\n  q: {type: hangup, say: 录好的提示, wav: prompts/bye.wav}\n"
    o, synth = await _run_plan(plan, [], prompt_audio=load)
    assert loaded == ["prompts/bye.wav"] and "录好的提示" not in synth.rendered
    assert [t.text for t in o.turns if t.speaker == "bot"] == ["录好的提示"]


async def test_speculative_transcript_is_used_when_the_reply_ends_at_the_pause() -> None:
    clock = VirtualClock()
    leg = ScriptedLeg(clock, ["多少钱啊", "好的可以"])
    rec = LengthRecognizer(leg)
    calls = 0
    inner = rec.transcribe

    async def counting(pcm: Any, *, sample_rate: int = 8000) -> Any:
        nonlocal calls
        calls += 1
        return await inner(pcm, sample_rate=sample_rate)

    rec.transcribe = counting  # type: ignore[method-assign]
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=rec,
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        clock=clock,
    )
    o = await _finish(session, clock)
    assert "booked" in o.tags
    assert session.spec_used == 2 and session.spec_discarded == 0
    assert calls == 2  # each reply transcribed once, at its 250 ms pause


class _StreamingLength:
    """A streaming recogniser fake: counts what it is fed while the callee speaks and maps the length
    (the utterance without its end-of-turn silence, which is held back) back to the scripted reply."""

    name = "fake-stream"

    def __init__(self, leg: ScriptedLeg) -> None:
        self.leg = leg
        self.fed = 0
        self.feeds = 0
        self.transcribes = 0
        self.closed = 0
        self.hinted = 0  # finishing() calls: each utterance's end is announced before its final()

    async def transcribe(self, pcm: Any, *, sample_rate: int = 8000) -> Any:
        self.transcribes += 1
        return await LengthRecognizer(self.leg).transcribe(pcm)

    def stream(self, *, sample_rate: int = 8000) -> Any:
        owner = self

        class _S:
            n = 0

            async def feed(self, pcm: Any) -> str:
                self.n += len(pcm)
                owner.fed += len(pcm)
                owner.feeds += 1
                return ""

            def finishing(self) -> None:
                owner.hinted += 1

            async def final(self) -> Any:
                import numpy as np

                assert owner.hinted > owner.closed, "final() without the finishing() hint before it"
                # fed = the utterance the endpointer cut (its end silence is held back, never decoded)
                return await LengthRecognizer(owner.leg).transcribe(np.zeros(self.n, np.int16))

            async def close(self) -> None:
                owner.closed += 1

        return _S()


async def test_streaming_engine_is_fed_while_the_callee_speaks() -> None:
    clock = VirtualClock()
    leg = ScriptedLeg(clock, ["多少钱啊", "好的可以"])
    rec = _StreamingLength(leg)
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=rec,
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        clock=clock,
    )
    o = await _finish(session, clock)
    assert "booked" in o.tags
    assert [t.text for t in o.turns if t.speaker == "callee"] == ["多少钱啊", "好的可以"]
    assert rec.transcribes == 0 and session.streamed == 2 and rec.closed == 2 and rec.hinted == 2
    # both replies (0.6 s + 0.8 s of speech) with pre-roll and a 0.1 s tail; not the 2 x 0.6 s end silence
    assert 8000 * (0.6 + 0.8) <= rec.fed <= 8000 * (0.6 + 0.8 + 2 * 0.3)


class _PartialEcho:
    """A streaming recogniser fake whose partial is the reply being spoken (once 0.2 s of it is fed)."""

    name = "fake-partials"

    def __init__(self, leg: ScriptedLeg) -> None:
        self.leg = leg

    def stream(self, *, sample_rate: int = 8000) -> Any:
        leg = self.leg

        class _S:
            n = 0

            def text(self) -> str:
                return leg.reply_lengths[max(leg.reply_lengths)] if self.n >= 1600 else ""

            async def feed(self, pcm: Any) -> str:
                self.n += len(pcm)
                return self.text()

            def finishing(self) -> None:
                return None

            async def final(self) -> Any:
                from engine.ports import Transcript

                return Transcript(text=self.text(), engine="fake-partials")

            async def close(self) -> None:
                return None

        return _S()

    async def transcribe(self, pcm: Any, *, sample_rate: int = 8000) -> Any:
        raise AssertionError("a streaming engine is not asked to transcribe whole utterances")


async def _run_partials(replies: list[str], *, early_end: bool) -> tuple[CallOutcome, CallSession]:
    from engine.call.session import SessionConfig

    clock = VirtualClock()
    leg = ScriptedLeg(clock, replies)
    session = CallSession(
        leg,
        dialplans.get("trial-class-zh"),
        recognizer=_PartialEcho(leg),
        classifier=KeywordClassifier(),
        synthesizer=ToneSynth(),
        clock=clock,
        config=SessionConfig(early_end=early_end),
    )
    return await _finish(session, clock, 4000), session


async def test_a_complete_streaming_partial_ends_the_turn_at_the_first_pause() -> None:
    replies = ["多少钱啊", "好的"]
    fast, s_fast = await _run_partials(replies, early_end=True)
    slow, s_slow = await _run_partials(replies, early_end=False)
    # the same conversation either way
    assert [t.text for t in fast.turns if t.speaker == "callee"] == replies
    assert [t.text for t in slow.turns if t.speaker == "callee"] == replies
    assert [t.node for t in fast.turns] == [t.node for t in slow.turns]
    # "多少钱啊" is an open question: it waits for the end silence; "好的" ends at the 250 ms pause
    assert (s_fast.early_ends, s_slow.early_ends) == (1, 0)
    fb = [t.start_s for t in fast.turns if t.speaker == "bot"]
    sb = [t.start_s for t in slow.turns if t.speaker == "bot"]
    assert fb[:3] == sb[:3]  # disclosure, greeting, the price answer
    assert 0.25 <= sb[3] - fb[3] <= 0.45  # 600 ms end silence - 250 ms pause, within a frame or two
