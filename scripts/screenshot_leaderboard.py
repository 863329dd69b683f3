"""Screenshot a leaderboard page in headless Chromium, to check how `table --format html` looks.

    cromo-bench table --split cifar100-10x10 --format html --output leaderboard.html
    python scripts/screenshot_leaderboard.py leaderboard.html leaderboard.png [--size 1400,1000]

Needs `chromium` (or `chromium-browser`) on PATH, e.g. Debian's `apt-get install chromium`. The page is
self-contained, so the browser runs with networking features off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def screenshot(page: Path, out: Path, size: str = "1400,1000") -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium not found on PATH (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
               f"--screenshot={out.resolve()}", page.resolve().as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=Path("leaderboard.png"))
    parser.add_argument("--size", default="1400,1000", help="window width,height in pixels")
    args = parser.parse_args()
    print(screenshot(args.page, args.out, args.size), file=sys.stdout)


if __name__ == "__main__":
    main()
