#!/usr/bin/env python3
"""Open an mmtk HTML report (``mmtk evaluate --report``) in headless Chromium, offline:
take a screenshot and count the images that loaded (``print_pdf`` prints it too).

    python scripts/report_screenshot.py REPORT.html OUT.png [--width 1200 --height 1600]

prints ``images loaded: K of N, pixel spread S`` and exits 1 unless every image loaded
and the screenshot is not blank. tests/test_report_browser.py uses these functions;
docs/report.png was made with it. Needs Debian's ``chromium`` package (scripts/setup.sh
installs it where it can) and Pillow.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The probe copy of the report ends with this script; it sets an attribute on <body>
# once the page has loaded, which --dump-dom then shows. The report itself has no script.
PROBE = (
    "<script>window.addEventListener('load', () => {"
    " const images = Array.from(document.images);"
    " const loaded = images.filter(i => i.complete && i.naturalWidth > 0).length;"
    " document.body.setAttribute('data-images-loaded', loaded + '/' + images.length); });</script>"
)


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable, or None."""
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def _run(chromium: str, profile: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        # Every host name fails to resolve: the report must not need the network.
        "--host-resolver-rules=MAP * ~NOTFOUND", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def images_loaded(html: Path, *, chromium: str | None = None) -> tuple[int, int]:
    """``(loaded, total)`` images of the report once Chromium has loaded it."""
    chromium = chromium or find_chromium()
    with tempfile.TemporaryDirectory() as work:
        probe = Path(work) / "probe.html"
        page = Path(html).read_text(encoding="utf-8")
        probe.write_text(page.replace("</body>", PROBE + "</body>", 1), encoding="utf-8")
        done = _run(chromium, Path(work) / "profile", "--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri())
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', done.stdout)
    if not found:
        raise RuntimeError(f"chromium did not load the page (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    return int(found.group(1)), int(found.group(2))


def screenshot(html: Path, png: Path, *, width: int = 1200, height: int = 1600, chromium: str | None = None) -> Path:
    """A ``width`` x ``height`` screenshot of the report's top as ``png``."""
    chromium = chromium or find_chromium()
    png = Path(png).resolve()
    with tempfile.TemporaryDirectory() as work:
        done = _run(chromium, Path(work) / "profile", f"--window-size={width},{height}", f"--screenshot={png}", Path(html).resolve().as_uri())
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    return png


def print_pdf(html: Path, pdf: Path, *, chromium: str | None = None) -> int:
    """Print the report to ``pdf`` as Chromium prints it (the page's print style, A4);
    return the number of pages."""
    chromium = chromium or find_chromium()
    pdf = Path(pdf).resolve()
    with tempfile.TemporaryDirectory() as work:
        done = _run(chromium, Path(work) / "profile", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", Path(html).resolve().as_uri())
    if not pdf.is_file():
        raise RuntimeError(f"chromium printed no PDF (exit {done.returncode}): {done.stderr.strip()[-400:]}")
    return len(re.findall(rb"/Type\s*/Page\b", pdf.read_bytes()))


def pixel_spread(png: Path) -> float:
    """Standard deviation of the screenshot's grey levels: 0 for a blank page."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        return float(np.asarray(image.convert("L"), dtype=np.float64).std())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    args = parser.parse_args()
    if find_chromium() is None:
        print("no chromium found: install Debian's chromium package (scripts/setup.sh does, as root)", file=sys.stderr)
        return 2
    loaded, total = images_loaded(args.report)
    spread = pixel_spread(screenshot(args.report, args.png, width=args.width, height=args.height))
    print(f"images loaded: {loaded} of {total}, pixel spread {spread:.1f}")
    return 0 if loaded == total and spread > 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
