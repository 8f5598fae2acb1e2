"""The web console: static assets (no build step, no CDN) served by `outcall serve` at `/`."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
