"""Import benchmark: a 1 M-row call list (CSV, GBK-free UTF-8 with a BOM, ~1 % bad rows, ~1 % duplicates)
streamed into a SQLite campaign.

    .venv/bin/python bench/import.py --rows 1000000 --json

Measured: wall seconds for the import, peak RSS of this process (ru_maxrss), rows/s. Targets: ≤ 60 s and
≤ 500 MB RSS. Prints one JSON object and writes bench/results/import.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

from engine.campaign.scheduler import CampaignConfig
from gateway.store.sqlite import SqliteStore
from outcall.contacts_import import import_contacts


def make_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        f.write("手机号,姓名,同意,城市,课程\r\n")
        for i in range(rows):
            if i % 100 == 7:
                phone = f"12{i:05d}"  # invalid
            elif i % 100 == 8:
                phone = f"138 {(i - 2) // 10000:04d} {(i - 2) % 10000:04d}"  # duplicate of an earlier row
            elif i % 10 == 3:
                phone = f"+86-139-{i // 10000:04d}-{i % 10000:04d}"
            else:
                phone = f"138{i // 10000:04d}{i % 10000:04d}"
            f.write(f"{phone},客户{i},是,北京,数学\r\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "list.csv"
        make_csv(src, args.rows)
        store = SqliteStore(Path(d) / "o.db")
        store.create_campaign_sync(CampaignConfig(name="bench", dialplan="trial-class-zh"))
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        rep = import_contacts(store, "bench", src)
        wall = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = {
            "rows": args.rows,
            "file_mb": round(src.stat().st_size / 2**20, 1),
            "imported": rep.imported,
            "duplicates": rep.duplicates,
            "invalid": rep.invalid_count,
            "wall_s": round(wall, 2),
            "rows_per_s": round(args.rows / wall),
            "peak_rss_mb": round(rss / 1024, 1),
            "rss_before_import_mb": round(rss0 / 1024, 1),
            "targets": {"wall_s": 60, "peak_rss_mb": 500},
            "ok": wall <= 60 and rss / 1024 <= 500,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
        store.close()
    out = Path(__file__).parent / "results" / "import.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
