"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` package,
which scripts/setup.sh installs when run as root) loads it offline, every embedded image
decodes, and the screenshot is not blank. Skipped, saying so, where Chromium is absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mmtk.plots import plot_task
from mmtk.report import write_report

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "report_screenshot.py"
spec = importlib.util.spec_from_file_location("report_screenshot", SCRIPT)
browser = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser)

pytestmark = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="headless Chromium is not installed: `sudo apt-get install chromium` (bash scripts/setup.sh does it as root)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p = np.clip(0.5 * y + 0.5 * rng.random(50), 0, 1)
    plots = plot_task("binary", y, np.stack([1 - p, p], axis=1), ["0", "1"], folder / "plots", title="label")
    result = {"task": "label", "n": 50, "metrics": {"accuracy": 0.86, "macro_f1": 0.8571}, "intervals": {"accuracy": [0.76, 0.94], "macro_f1": [0.75, 0.94]}}
    return write_report(folder / "report.html", result, plots=plots, runs=[("runs/gmu", {"model": {"name": "gmu"}})], command="mmtk evaluate runs/gmu test.jsonl --report report.html")


def test_every_image_loads_offline(report):
    loaded, total = browser.images_loaded(report)
    assert total == 6 and loaded == total


def test_screenshot_is_not_blank(report, tmp_path):
    shot = browser.screenshot(report, tmp_path / "shot.png", width=1000, height=1200)
    assert browser.pixel_spread(shot) > 10.0


def test_it_prints(report, tmp_path):
    pages = browser.print_pdf(report, tmp_path / "report.pdf")
    assert (tmp_path / "report.pdf").read_bytes()[:5] == b"%PDF-" and 1 <= pages <= 6


def test_the_checks_catch_a_broken_image_and_a_blank_page(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)  # a PNG signature and nothing decodable
    page = write_report(tmp_path / "broken.html", {"task": "t", "n": 1, "metrics": {"accuracy": 1.0}}, plots=[broken])
    assert browser.images_loaded(page) == (0, 1)
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body style='background:#fff'></body></html>")
    assert browser.pixel_spread(browser.screenshot(blank, tmp_path / "blank.png", width=400, height=300)) < 1.0
