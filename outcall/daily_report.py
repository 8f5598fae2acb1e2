"""The daily report (日报) of a campaign: figures from the store, rendered as WeCom-robot markdown, CSV
or JSON. `outcall report daily NAME [--day YYYY-MM-DD] [--format md|csv|json]`."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from datetime import date, datetime, time, timedelta
from typing import Any

from engine.campaign.calendar import zone
from engine.errors import ConfigError
from engine.reporting import DailyReport, daily_report
from gateway.store.campaigns import CampaignStore
from gateway.store.reports import CallFilter, Reports
from outcall.settings import Settings

DISPOSITION_ZH = {
    "answered": "接通",
    "no_answer": "无人接听",
    "busy": "忙线",
    "rejected": "拒接",
    "powered_off": "关机",
    "invalid_number": "空号",
    "suspended": "停机",
    "unreachable": "无法接通",
    "carrier_blocked": "运营商拦截",
    "voicemail": "语音信箱",
    "media_timeout": "媒体中断",
    "failed": "系统失败",
    "cancelled": "已取消",
    "dnc_blocked": "免打扰拦截",
    "transfer_failed": "转人工失败",
}


def build(store: CampaignStore, campaign: str, day: date | None = None) -> DailyReport:
    """Blocking (SQL): the campaign's figures for one local day (default: today in its zone)."""
    cfg, _status = store.get_campaign_sync(campaign)
    z = zone(cfg.timezone)
    d = day or datetime.now(z).date()
    start = datetime.combine(d, time(0), z)
    f = CallFilter(campaign=campaign, since=start, until=start + timedelta(days=1))
    return daily_report(
        Reports(store).iter_outcomes(f),
        campaign=campaign,
        day=d,
        timezone=cfg.timezone,
        budget=cfg.budget,
        spent_total=store.spent_sync(campaign),
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def to_markdown(r: DailyReport) -> str:
    """Chinese markdown as the WeCom group robot renders it (4096 bytes max: long lists are cut)."""
    lines = [
        f"### 外呼日报 · {r.campaign} · {r.day.isoformat()}",
        f'> 拨打 <font color="info">{r.dialed}</font> 通，接通 {r.connected} 通'
        f"，接通率 {_pct(r.connect_rate)}",
        f'> 意向客户(A/B) <font color="warning">{r.interested}</font> 人',
        f"> 通话 {r.talk_s / 60:.1f} 分钟，计费 {r.billed_min:.0f} 分钟，费用 {r.cost:.2f}",
    ]
    if r.budget:
        lines.append(f"> 预算 {r.budget:g}，累计已用 {r.spent_total or 0:.2f}（{_pct(r.budget_used)}）")
    if r.grades:
        lines.append("**意向等级** " + "，".join(f"{g}: {n}" for g, n in r.grades.items()))
    if r.dispositions:
        lines.append(
            "**呼叫结果** " + "，".join(f"{DISPOSITION_ZH.get(k, k)}: {n}" for k, n in r.dispositions.items())
        )
    if r.intents:
        lines.append("**客户意图** " + "，".join(f"{k}: {n}" for k, n in list(r.intents.items())[:8]))
    if r.funnel:
        lines.append("**话术漏斗**（到达 / 在此结束）")
        lines += [f"- {s.node}: {s.reached} / {s.ended_here}" for s in r.funnel[:12]]
    text = "\n".join(lines)
    while len(text.encode("utf-8")) > 4000:  # the robot's limit is 4096 bytes
        lines.pop()
        text = "\n".join(lines)
    return text


def to_csv(r: DailyReport) -> str:
    """One metric per row (section, key, value): opens in Excel (UTF-8 with BOM)."""
    buf = io.StringIO()
    buf.write("\ufeff")
    w = csv.writer(buf)
    w.writerow(["section", "key", "value"])
    for k in ("campaign", "day", "dialed", "connected", "connect_rate", "interested", "talk_s", "billed_min"):
        w.writerow(["summary", k, getattr(r, k)])
    for k in ("cost", "budget", "spent_total", "budget_used"):
        w.writerow(["summary", k, getattr(r, k)])
    for section, data in (("disposition", r.dispositions), ("grade", r.grades), ("intent", r.intents)):
        for k, v in data.items():
            w.writerow([section, k, v])
    for s in r.funnel:
        w.writerow(["funnel_reached", s.node, s.reached])
        w.writerow(["funnel_ended", s.node, s.ended_here])
    return buf.getvalue()


async def post_to_robot(settings: Settings, robot: str, markdown: str) -> None:
    """Post the report to a WeCom group robot (OUTCALL_WECOM_ROBOT_KEYS names it), within the robot's
    20 messages a minute."""
    from gateway.wecom import WecomClient

    key = settings.wecom_robot_keys.get(robot)
    if key is None:
        known = ", ".join(settings.wecom_robot_keys) or "none configured"
        raise ConfigError(
            f"no WeCom robot named {robot!r} (robots: {known})",
            hint='set OUTCALL_WECOM_ROBOT_KEYS=\'{"ops": "<webhook key>"}\'',
        )
    client = WecomClient(settings.wecom_corp_id or "", "", base_url=settings.wecom_api_base)
    try:
        await client.robot_send(key.get_secret_value(), markdown)
    finally:
        await client.close()


def add_parsers(sub: Any) -> None:
    rp = sub.add_parser("report", help="campaign reports")
    rps = rp.add_subparsers(dest="rcmd", required=True)
    d = rps.add_parser("daily", help="the daily report (日报) of a campaign")
    d.add_argument("name")
    d.add_argument("--day", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: today)")
    d.add_argument("--format", choices=["md", "csv", "json"], default="md")
    d.add_argument("--post", metavar="ROBOT", default=None, help="also post it to this WeCom group robot")
    d.set_defaults(fn=cmd_daily)


def cmd_daily(args: argparse.Namespace) -> int:
    from gateway.store import open_store
    from outcall.settings import load_settings

    settings = load_settings()
    store = open_store(settings.db)
    try:
        r = build(store, args.name, args.day)
    finally:
        store.close()
    if args.post:
        import asyncio

        asyncio.run(post_to_robot(settings, args.post, to_markdown(r)))
    out = (
        to_markdown(r)
        if args.format == "md"
        else to_csv(r)
        if args.format == "csv"
        else r.model_dump_json(indent=1)
    )
    sys.stdout.write(out + ("" if out.endswith("\n") else "\n"))
    return 0
