"""The static HTML report: built from tiny real runs, parsed, every referenced file checked; missing pieces skipped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from translate.engine.trainer import train
from translate.evaluation import write_report
from translate.evaluation.report import MAX_POINTS, read_jsonl, svg_chart

ROOT = Path(__file__).resolve().parents[1]


class _Page(HTMLParser):
    """Collects what a page refers to (src, href), its scripts and the rows of its sortable tables."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.script_sources: list[str] = []
        self.sortable_rows = 0
        self._in_sortable_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if attrs.get(key):
                self.refs.append(attrs[key])
        if tag == "script" and attrs.get("src"):
            self.script_sources.append(attrs["src"])
        if tag == "table" and "sortable" in (attrs.get("class") or ""):
            self._in_sortable_body = True
        if tag == "tr" and self._in_sortable_body:
            self.sortable_rows += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_sortable_body = False


def _parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text()
    page = _Page()
    page.feed(text)
    return text, page


def _check_refs(report: Path, page: _Page) -> None:
    for ref in page.refs:
        assert not ref.startswith(("http:", "https:", "//")), f"the report must work offline: {ref}"
        target = (report.parent / unquote(ref)).resolve()
        assert target.exists(), f"{ref} does not exist"
    assert not page.script_sources  # only the inline sorting script


def test_report_of_a_tiny_pix2pix_run(tiny_config):
    run = train(tiny_config("pix2pix", "train.max_steps=4"))
    # Periodic evaluation as the trainer logs it.
    (run / "logs" / "metrics.jsonl").write_text('{"step": 2, "psnr": 11.5, "ssim": 0.2}\n'
                                                '{"step": 4, "psnr": 12.5, "ssim": 0.3}\n')
    start = time.perf_counter()
    report = write_report(run)
    elapsed = time.perf_counter() - start
    assert report == run / "report" / "index.html"
    text, page = _parse(report)
    _check_refs(report, page)
    for term in ("loss_G_GAN", "loss_G_L1", "loss_D_real", "loss_D_fake", "psnr", "ssim"):
        assert f"<title>{term}</title>" in text  # one chart per loss term and per metric
    assert "../samples/step_000004.png" in page.refs
    assert page.sortable_rows == 1 + 4  # header + the 4 test images
    assert sum(ref.startswith("gallery/") for ref in page.refs) == 4 * 3  # input | output | target
    assert elapsed < 20, f"the report took {elapsed:.1f} s"  # generous: CI machines are shared


def test_report_of_a_cyclegan_run_has_no_target_column(tiny_config):
    run = train(tiny_config("cyclegan", "train.max_steps=1"))
    report = write_report(run, gallery_size=1)
    text, page = _parse(report)
    _check_refs(report, page)
    assert sum(ref.startswith("gallery/") for ref in page.refs) == 2  # input | output
    assert "A | fake B | B | fake A" in text


def test_missing_pieces_become_notes(tiny_config, paired_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    text, page = _parse(write_report(empty))
    for note in ("no losses logged", "no periodic evaluation", "no evaluation results", "no sample grids",
                 "no exported model"):
        assert note in text
    _check_refs(empty / "report" / "index.html", page)

    run = train(tiny_config("pix2pix", "train.max_steps=2"))
    shutil.rmtree(paired_root / "test")
    with open(run / "logs" / "losses.jsonl", "a") as f:
        f.write('{"step": 3, "loss_G_GAN": 0.')  # a line cut off by a crash
    text, _ = _parse(write_report(run))
    assert "no test split" in text and "<title>loss_G_GAN</title>" in text
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "absent")


class _Charts(HTMLParser):
    """Each chart of a page (or one SVG) by its title: the plot frame (x, y, width, height) and its points."""

    def __init__(self):
        super().__init__()
        self.charts: dict[str, dict] = {}
        self._current: dict | None = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self._current = {"frame": None, "lines": [], "dots": []}
        elif tag == "title" and self._current is not None:
            self._in_title = True
        elif tag == "rect":
            self._current["frame"] = tuple(float(attrs[k]) for k in ("x", "y", "width", "height"))
        elif tag == "polyline":
            self._current["lines"].append([tuple(map(float, p.split(","))) for p in attrs["points"].split()])
        elif tag == "circle":
            self._current["dots"].append((float(attrs["cx"]), float(attrs["cy"])))

    def handle_data(self, data):
        if self._in_title:
            self.charts[data] = self._current
            self._in_title = False


def _charts(text: str) -> dict[str, dict]:
    parser = _Charts()
    parser.feed(text)
    return parser.charts


def _close(points, expected) -> None:
    """Coordinates within the SVG's 0.1 px rounding."""
    np.testing.assert_allclose(np.asarray(points, dtype=float), np.asarray(expected, dtype=float), atol=0.06, rtol=0)


def _expected(frame, point, x_range, y_range) -> tuple[float, float]:
    """Where a linear chart puts ``point``: steps left to right across the frame, values bottom to top."""
    left, top, width, height = frame
    (x0, x1), (y0, y1) = x_range, y_range
    return left + (point[0] - x0) / (x1 - x0) * width, top + height - (point[1] - y0) / (y1 - y0) * height


def test_chart_points_land_where_their_values_say():
    values = [(100, 2.0), (150, 3.0), (200, 1.0), (300, 5.0)]
    chart = _charts(svg_chart("loss", {"loss": values}))["loss"]
    left, top, width, height = frame = chart["frame"]
    (line,) = chart["lines"]
    # Known points: the first step on the left edge, the last on the right; the largest value on the top edge, the
    # smallest on the bottom; step 150, value 3 a quarter across and half way up.
    assert line[0][0] == pytest.approx(left, abs=0.06) and line[-1][0] == pytest.approx(left + width, abs=0.06)
    assert line[3][1] == pytest.approx(top, abs=0.06) and line[2][1] == pytest.approx(top + height, abs=0.06)
    _close(line[1], (left + width / 4, top + height / 2))
    _close(line, [_expected(frame, p, (100, 300), (1.0, 5.0)) for p in values])


def test_charts_of_several_series_share_one_scale_and_long_logs_keep_their_ends():
    series = {"a": [(0, 0.0), (10, 1.0)], "b": [(5, 2.0), (20, -1.0)]}
    chart = _charts(svg_chart("two", series))["two"]
    expected = [[_expected(chart["frame"], p, (0, 20), (-1.0, 2.0)) for p in v] for v in series.values()]
    for line, points in zip(chart["lines"], expected, strict=True):
        _close(line, points)

    # Thinned to every other point, which would miss the last one (an odd index) unless it is kept on purpose.
    long = [(step, float(step % 7)) for step in range(2 * MAX_POINTS + 2)]
    chart = _charts(svg_chart("long", {"long": long}))["long"]
    (line,) = chart["lines"]
    assert len(line) <= MAX_POINTS + 2 and all(a[0] < b[0] for a, b in zip(line, line[1:]))
    ends = [_expected(chart["frame"], p, (0, 2 * MAX_POINTS + 1), (0.0, 6.0)) for p in (long[0], long[-1])]
    _close([line[0], line[-1]], ends)


def test_report_charts_plot_the_logged_values(tmp_path):
    (tmp_path / "logs").mkdir()
    rows = [{"step": s, "loss_G_GAN": g, "lr": 2e-4} for s, g in ((10, 0.5), (20, 1.5), (40, 1.0))]
    (tmp_path / "logs" / "losses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    charts = _charts(write_report(tmp_path, gallery_size=0).read_text())
    frame = charts["loss_G_GAN"]["frame"]
    (line,) = charts["loss_G_GAN"]["lines"]
    _close(line, [_expected(frame, (r["step"], r["loss_G_GAN"]), (10, 40), (0.5, 1.5)) for r in rows])
    # A constant (the learning rate here) is a flat line along the bottom, from the first step to the last.
    (flat,) = charts["lr"]["lines"]
    left, top, width, height = charts["lr"]["frame"]
    _close(flat, [(left, top + height), (left + width / 3, top + height), (left + width, top + height)])


def test_read_jsonl_skips_broken_lines_and_charts_handle_flat_and_single_points(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "a": 1.0}\nnot json\n[1, 2]\n{"step": 2, "a": 1.0}\n{"step": 3, "a"')
    assert [row["step"] for row in read_jsonl(log)] == [1, 2]
    assert "<polyline" in svg_chart("flat", {"a": [(1, 1.0), (2, 1.0)]})
    one = _charts(svg_chart("one", {"a": [(5, 2.0)]}))["one"]
    left, top, width, height = one["frame"]
    _close(one["dots"], [(left, top + height)])  # a lone point: the lower left corner
    assert svg_chart("none", {}) == ""


def test_cli_report(tiny_config, tmp_path):
    run = train(tiny_config("pix2pix", "train.max_steps=2"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "translate.cli", "report", str(run), "--gallery", "2"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("index.html")
    missing = subprocess.run([sys.executable, "-m", "translate.cli", "report", str(tmp_path / "absent")],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(tiny_config, tmp_path):
    run = train(tiny_config("pix2pix", "train.max_steps=4"))
    report = write_report(run)
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,1800", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert image.shape == (1800, 1200)
    assert image.std() > 10  # something was drawn: text, charts and images, not a blank page
