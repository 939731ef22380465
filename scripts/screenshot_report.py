#!/usr/bin/env python
"""Render an HTML report to a PNG with headless Chromium, to check how it looks.

Usage::

    python scripts/screenshot_report.py REPORT.html OUT.png [--width 1280] [--height 2000]
                                        [--chromium /usr/bin/chromium] [--timeout 120]

The page is opened from disk (``file://``) in a throw-away profile with networking features
off; a self-contained brainarr report needs nothing else. The screenshot covers the window
(``--width`` x ``--height`` CSS pixels, top of the page); raise ``--height`` to see more of a
long report. Chromium is found as ``--chromium``, ``$CHROMIUM`` or ``chromium``/
``chromium-browser``/``google-chrome`` on ``PATH`` (Debian: ``apt-get install chromium``).
Exit status 0 when the PNG was written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str:
    """Path of a Chromium/Chrome executable, or raise FileNotFoundError."""
    for name in (explicit, os.environ.get("CHROMIUM"), *CANDIDATES):
        if not name:
            continue
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no Chromium found: install it (Debian: apt-get install chromium) or pass --chromium PATH")


def screenshot(
    html: str | os.PathLike,
    out: str | os.PathLike,
    *,
    width: int = 1280,
    height: int = 2000,
    chromium: str | None = None,
    timeout: float = 120.0,
) -> Path:
    """Render ``html`` with headless Chromium into the PNG ``out`` and return its path."""
    html, out = Path(html).resolve(), Path(out).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"no such report: {html}")
    exe = find_chromium(chromium)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with tempfile.TemporaryDirectory(prefix="brainarr-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={int(width)},{int(height)}",
            html.as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed (exit {proc.returncode}) rendering {html}:\n{proc.stderr[-2000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="the HTML report")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    parser.add_argument("--height", type=int, default=2000, help="window height in CSS pixels")
    parser.add_argument("--chromium", default=None, help="Chromium executable")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    try:
        path = screenshot(
            args.report,
            args.out,
            width=args.width,
            height=args.height,
            chromium=args.chromium,
            timeout=args.timeout,
        )
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as err:
        print(f"screenshot_report: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
