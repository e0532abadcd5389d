"""The static HTML report of a run: ``write_report(run_dir)`` → ``run_dir/report/index.html``.

Loss curves and metric history as inline SVG (no plotting library, nothing fetched from the web), evaluation results
of ``translate eval``, sample grids over time (linked, not copied) and a gallery of a few test images with per-image
metrics in a table sortable by an inline script. A model whose kind is reported as a "strip" (one that generates from
noise, DCGAN: ``translate.networks.description.MODEL_KINDS``) gets instead one strip of its fixed-latent samples over
time (``report/samples_strip.png``; the grids stay linked) and no gallery. Each section is skipped with a note when
its inputs are missing.
"""

from __future__ import annotations

import html
import json
import logging
import math
import shutil
from pathlib import Path
from urllib.parse import quote

import yaml
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import save_image

from translate.fileio import write_text
from translate.imageio import plural
from translate.networks.description import ModelDescription, describe

log = logging.getLogger(__name__)

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_POINTS = 1000  # per curve; longer logs are thinned evenly
MAX_SAMPLES = 8  # sample grids shown inline; the others are linked
MAX_STRIP_ROWS = 16  # saved steps in the strip of a noise model's samples
STRIP_NAME = "samples_strip.png"
STRIP_FONT = 14  # pixels, for the step labels
# What the collapse watch of a noise model logs (translate.engine.watch) is not evaluate's outputs-over-inputs ratio.
WATCH_LABELS = {"diversity": "diversity of samples", "diversity_real": "diversity of real images",
                "diversity_ratio": "diversity, samples / real"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.note { color: #666; font-style: italic; white-space: pre-line; }
.warning { color: #b00; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; }
table.sortable th { cursor: pointer; }
table.sortable th::after { content: " \\2195"; color: #aaa; }
td.name { text-align: left; }
figure { display: inline-block; margin: .5em; }
img.pixel { image-rendering: pixelated; }
"""

# Sorts a table by the clicked column: numbers by value (data-value when given), text alphabetically.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], i = th.cellIndex, up = th.dataset.order !== "asc";
    th.dataset.order = up ? "asc" : "desc";
    var key = function (row) {
      var cell = row.cells[i], text = cell.dataset.value || cell.textContent, x = parseFloat(text);
      return isNaN(x) ? text : x;
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _e(text) -> str:
    return html.escape(str(text))


def _number(value: float) -> str:
    return f"{value:.4g}"


def _text_width(text: str, size: float = 10) -> float:
    """A generous width in pixels of ``text`` at font ``size``: DejaVu Sans's advances (wider than Arial's and
    Helvetica's), 0.84 em for "+", 0.64 em for the rest."""
    return sum(0.84 if c == "+" else 0.64 for c in text) * size


def svg_chart(title: str, series: dict[str, list[tuple[float, float]]], width: int = 380, height: int = 220) -> str:
    """A line chart as inline SVG: one polyline per series, min/max labels on both axes, a legend."""
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + abs(y0) * 0.1 + 1e-9)
    # The value labels sit left of the frame: room for the longer one ("6.667e-06" of a decayed lr).
    label_width = max(_text_width(_number(y0)), _text_width(_number(y1)))
    left, right, top, bottom = max(52, math.ceil(label_width) + 8), 10, 24, 30
    w, h = width - left - right, height - top - bottom

    def xy(x, y):
        return f"{left + (x - x0) / (x1 - x0) * w:.1f},{top + (1 - (y - y0) / (y1 - y0)) * h:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f"<title>{_e(title)}</title>",
             f'<text x="{left}" y="15" font-size="13" font-weight="bold">{_e(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 10}" font-size="10" text-anchor="end">{_number(y1)}</text>',
             f'<text x="{left - 4}" y="{top + h}" font-size="10" text-anchor="end">{_number(y0)}</text>',
             f'<text x="{left}" y="{height - 14}" font-size="10">{_number(x0)}</text>',
             f'<text x="{left + w}" y="{height - 14}" font-size="10" text-anchor="end">{_number(x1)}</text>',
             f'<text x="{left + w / 2}" y="{height - 4}" font-size="10" text-anchor="middle">step</text>']
    for k, (name, values) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        step = max(1, len(values) // MAX_POINTS)
        thinned = values[::step] + ([values[-1]] if (len(values) - 1) % step else [])
        if len(thinned) == 1:
            cx, cy = xy(*thinned[0]).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{color}"/>')
        else:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                         f'points="{" ".join(xy(x, y) for x, y in thinned)}"/>')
        if len(series) > 1:
            parts.append(f'<text x="{left + w - 4}" y="{top + 12 + 12 * k}" font-size="10" fill="{color}" '
                         f'text-anchor="end">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a log, skipping a line cut off by an interrupted write."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def _curves(rows: list[dict], skip: tuple[str, ...] = ("step", "epoch")) -> str:
    """One chart per logged term (loss_G_A, ..., lr); a term's ``_real`` value (diversity_real) shares its chart."""
    names = sorted({k for row in rows for k, v in row.items() if k not in skip and isinstance(v, int | float)},
                   key=lambda k: (k == "lr", k))
    charts = []
    for name in names:
        if name.endswith("_real") and name.removesuffix("_real") in names:
            continue
        charts.append(svg_chart(name, {n: [(row["step"], float(row[n])) for row in rows
                                           if isinstance(row.get(n), int | float)]
                                       for n in (name, f"{name}_real") if n in names}))
    return f'<div class="charts">{"".join(charts)}</div>'


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _losses_section(run_dir: Path) -> str:
    path = run_dir / "logs" / "losses.jsonl"
    rows = read_jsonl(path) if path.is_file() else []
    if not rows:
        return _note("no losses logged yet (logs/losses.jsonl)")
    return _curves(rows)


def _metrics_section(run_dir: Path) -> str:
    path = run_dir / "logs" / "metrics.jsonl"
    rows = read_jsonl(path) if path.is_file() else []
    if not rows:
        return _note("no periodic evaluation logged (logs/metrics.jsonl)")
    return _curves(rows)


def _metrics_table(values: dict, labels: dict | None = None) -> str:
    from translate.evaluation.evaluate import LABELS, format_value, metric_label

    labels = {**LABELS, **(labels or {})}
    rows = "".join(f'<tr><td class="name">{_e(metric_label(k, labels))}</td><td>{_e(format_value(k, v, values))}</td>'
                   "</tr>" for k, v in values.items() if not k.endswith("_std") and isinstance(v, int | float))
    return f"<table>{rows}</table>"


def _eval_section(run_dir: Path, strip: bool) -> str:
    """The results of `translate eval` (and the demo), which measure full-size images; without any, the last
    periodic evaluation of training (logs/metrics.jsonl, at the config's test-time size)."""
    from translate.evaluation.evaluate import NOISE_LABELS

    files = sorted((run_dir / "eval").glob("*.json")) if (run_dir / "eval").is_dir() else []
    history = run_dir / "logs" / "metrics.jsonl"
    periodic = read_jsonl(history) if history.is_file() else []
    if not files and periodic:
        last = {k: v for k, v in periodic[-1].items() if k not in ("step", "epoch")}
        return (_note(f"the last periodic evaluation of training, step {periodic[-1]['step']} (logs/metrics.jsonl, "
                      "at the config's test-time size); `translate eval RUN_DIR` measures full-size images")
                + _metrics_table(last, WATCH_LABELS if strip else None))
    if not files:
        return _note("no evaluation results yet: run `translate eval RUN_DIR` to add them")
    parts = [_note("full-size images, as `translate eval` measures them; the metric history above is measured at "
                   "the config's test-time size")] if periodic else []
    for path in files:
        try:
            data = json.loads(path.read_text())
            info, values = data["info"], data["metrics"]
        except (json.JSONDecodeError, KeyError, TypeError):
            parts.append(_note(f"{path.name}: not an evaluation result"))
            continue
        title = f"{path.name}: {info.get('split', '')} split, {info.get('direction', '')}, step {info.get('step')}"
        labels = NOISE_LABELS if info.get("kind") == "noise" else None
        parts.append(f"<h3>{_e(title)}</h3>{_metrics_table(values, labels)}")
        if isinstance(data.get("measured"), dict) and data["measured"]:
            parts.append(_note(_measured_line(data["measured"])))
        parts += [_note(n) for n in data.get("notes", [])]
        parts += [f'<p class="warning">{_e(w)}</p>' for w in data.get("warnings", [])]
    return "".join(parts)


def _measured_line(measured: dict) -> str:
    """When each metric of a result file was measured, and on how many images: "measured: psnr, ssim at
    2026-12-07T01:40:00+00:00 (3 images); fid, kid at ... (3 vs 3 images)"."""
    groups: dict[tuple, list[str]] = {}
    for name, record in measured.items():
        record = record if isinstance(record, dict) else {}
        groups.setdefault((record.get("time"), record.get("images"), record.get("real_images")), []).append(name)
    parts = []
    for (time, images, real), names in groups.items():
        count = f"{images} vs {real} images" if images is not None and real is not None else (
            plural(images, "image") if images is not None else "")
        when = f" at {time}" if time else " by an earlier `translate eval`"
        parts.append(f"{', '.join(names)}{when}" + (f" ({count})" if count else ""))
    return "measured: " + "; ".join(parts)


def _step_of(path: Path) -> int:
    digits = "".join(c for c in path.stem if c.isdigit())
    return int(digits) if digits else -1


def _shown_width(path: Path) -> int:
    """Small grids (tiny test images) are enlarged to stay visible, large ones shrunk to fit several per row."""
    try:
        with Image.open(path) as image:  # reads the header only
            width = image.size[0]
    except OSError:
        return 420
    return min(420, max(300, width))


def describe_run(run_dir: Path) -> ModelDescription | None:
    """The run's model: ``model/`` once exported; before, what its config.yaml trains (kind and image size from
    model.netG and data.crop_size, no directions); None without either."""
    if (run_dir / "model" / "config.json").is_file():
        return describe(run_dir / "model")
    path = run_dir / "config.yaml"
    config = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    if not config.get("model", {}).get("netG"):
        return None
    spec = {"netG": config["model"]["netG"], "image_size": config.get("data", {}).get("crop_size")}
    return ModelDescription.from_config({"generators": {"G": spec}, "config": config})


def _strip_size(description: ModelDescription | None) -> int | None:
    """The sample size of a model shown as a strip of samples, else None."""
    if description is None or description.behaviour.report != "strip":
        return None
    return description.generators[description.generator()]["image_size"]


def write_strip(grids: list[Path], size: int, path: Path) -> None:
    """The first row of each fixed-latent sample grid (cells of ``size``² 2 px apart, as ``save_samples`` lays them
    out), one row per grid from the top down, each labelled with its step; small samples are enlarged."""
    cell, scale = size + 2, max(1, 64 // size)
    rows = []
    for grid in grids:
        with Image.open(grid) as image:
            if (image.width - 2) % cell or (image.height - 2) % cell:
                raise ValueError(f"{grid.name} is not a grid of {size}-pixel samples (data.crop_size of the run)")
            rows.append(image.convert("RGB").crop((0, 0, image.width, cell)))  # the top padding and the first row
    labels = [f"step {_step_of(g)}" for g in grids]
    font = ImageFont.load_default(STRIP_FONT)
    left = int(max(ImageDraw.Draw(rows[0]).textlength(t, font=font) for t in labels)) + 12
    width, height = max(r.width for r in rows), cell * len(rows) + 2
    strip = Image.new("RGB", (width, height))
    for k, row in enumerate(rows):
        strip.paste(row, (0, k * cell))
    strip = strip.resize((width * scale, height * scale), Image.NEAREST)
    canvas = Image.new("RGB", (left + strip.width, strip.height), "white")
    canvas.paste(strip, (left, 0))
    draw = ImageDraw.Draw(canvas)
    for k, text in enumerate(labels):
        x, y = left - 6 - draw.textlength(text, font=font), (k * cell + 2 + size / 2) * scale - STRIP_FONT / 2
        draw.text((x, y), text, fill="#222", font=font)
    canvas.save(path)


def _strip_section(out_dir: Path, samples: list[Path], size: int) -> str:
    """A noise model: its fixed latents' samples over time as one strip; every grid stays one click away."""
    from translate.data import evenly_spaced  # here: the report reads runs without the data stack

    picked = [samples[i] for i in evenly_spaced(len(samples), MAX_STRIP_ROWS)]
    write_strip(picked, size, out_dir / STRIP_NAME)
    steps = ", ".join(str(_step_of(s)) for s in picked)
    links = ", ".join(f'<a href="../samples/{quote(s.name)}">{_e(s.stem)}</a>' for s in samples)
    return (_note("the same fixed latents at every step (the first row of each sample grid), top to bottom")
            + f'<figure><img src="{STRIP_NAME}" alt="samples of fixed latents at steps {steps}" class="pixel">'
            f"<figcaption>steps {_e(steps)}</figcaption></figure>"
            + f"<details><summary>all {plural(len(samples), 'grid')}</summary>{links}</details>")


def _samples_section(run_dir: Path, out_dir: Path, recipe: str, size: int | None) -> str:
    from translate.data import evenly_spaced  # here: the report reads runs without the data stack

    samples = sorted((run_dir / "samples").glob("*.png"), key=_step_of) if (run_dir / "samples").is_dir() else []
    if not samples:
        return _note("no sample grids saved (samples/*.png)")
    if size:
        return _strip_section(out_dir, samples, size)
    columns = {"pix2pix": "input | output | target", "cyclegan": "A | fake B | B | fake A"}.get(recipe, "")
    # Evenly spaced grids, always the first and the last; the others stay one click away.
    picked = evenly_spaced(len(samples), MAX_SAMPLES)
    figures = "".join(
        f'<figure><a href="../samples/{quote(samples[i].name)}"><img src="../samples/{quote(samples[i].name)}" '
        f'alt="{_e(samples[i].stem)}" class="pixel" width="{_shown_width(samples[i])}"></a>'
        f"<figcaption>{_e(samples[i].stem)}</figcaption></figure>" for i in picked)
    others = [s for i, s in enumerate(samples) if i not in picked]
    links = ", ".join(f'<a href="../samples/{quote(s.name)}">{_e(s.stem)}</a>' for s in others)
    intro = _note(f"one row per example: {columns}") if columns else ""
    return intro + figures + (f"<details><summary>{len(others)} more</summary>{links}</details>" if others else "")


def _gallery_section(run_dir: Path, out_dir: Path, size: int, device: str | None,
                     description: ModelDescription | None) -> str:
    """Run the exported model on the first ``size`` test images (test-time crop of the config). Images of other
    channel counts than gray and RGB are shown through ``train.sample_channels`` (``display.to_rgb``), as stated."""
    from translate.config import load_config
    from translate.data import DatasetNotFoundError
    from translate.evaluation.display import describe_mapping, to_rgb
    from translate.evaluation.evaluate import PAIRED_MODES, evaluate_details, metric_label
    from translate.networks.pretrained import load_pretrained

    if size <= 0:
        return _note("gallery disabled")
    if description is not None and description.behaviour.report == "strip":
        return _note(f"the model {description.behaviour.does}: it has no test images to translate (its samples are "
                     f"above; `{description.behaviour.command} RUN_DIR/model OUT_DIR` draws more)")
    if description is None or description.directory is None or not (run_dir / "config.yaml").is_file():
        return _note("no exported model (model/) yet: the gallery appears once training has finished")
    config = load_config(run_dir / "config.yaml")
    meta, nets = load_pretrained(description)
    if device:
        nets = {k: v.to(device) for k, v in nets.items()}
    paired = config.data.dataset_mode in PAIRED_MODES
    try:
        result = evaluate_details(nets, config, "test", ("psnr", "ssim") if paired else ("diversity",), size,
                                  keep_images=size, batch_size=1)
    except DatasetNotFoundError as e:
        return _note(f"no test split, so no gallery ({e})")
    gallery = out_dir / "gallery"
    shutil.rmtree(gallery, ignore_errors=True)
    gallery.mkdir(parents=True)
    columns = ["input", "output"] + (["target"] if paired else [])
    metric_names = [m for m in ("psnr", "ssim") if any(m in row for row in result.per_image)]
    metric_names += sorted({k for row in result.per_image for k in row if k.startswith(("psnr_ch", "ssim_ch"))})
    head = "".join(f"<th>{_e(metric_label(c))}</th>" for c in ["#", "file", *columns, *metric_names])
    rows = []
    channels = list(config.train.sample_channels)
    shown = {}  # column -> how its channels are shown, for images that are not gray or RGB
    for k, (images, row) in enumerate(zip(result.images, result.per_image)):
        cells = [f'<td data-value="{k}">{k}</td>', f'<td class="name">{_e(Path(row["input"]).name)}</td>']
        for column in columns:
            name = f"{k:03d}_{column}.png"
            image = images[column].float()
            if image.shape[0] not in (1, 3) or channels:
                shown[column] = describe_mapping(image.shape[0], channels)
                image = to_rgb(image[None], channels)[0]
            save_image(image.clamp(0, 1), gallery / name)
            cells.append(f'<td><img src="gallery/{name}" alt="{column} {k}" class="pixel" '
                         f'style="width: {max(128, min(256, images[column].shape[-1]))}px"></td>')
        cells += [f'<td data-value="{row[m]:.6f}">{row[m]:.4f}</td>' for m in metric_names]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    step = meta.get("step")
    intro = _note(f"model/ (step {step}) on the first {plural(len(rows), 'test image')}, test-time resize and crop "
                  "of the config; click a column header to sort")
    if shown:  # the channel → RGB mapping (train.sample_channels), stated
        intro += _note("shown: " + "; ".join(f"{column}: {how}" for column, how in shown.items())
                       + " (train.sample_channels)")
    return f'{intro}<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def write_report(run_dir: str | Path, gallery_size: int = 8, device: str | None = None) -> Path:
    """Write ``run_dir/report/index.html`` from what the run directory holds now; returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory")
    out_dir = run_dir / "report"
    out_dir.mkdir(exist_ok=True)
    try:
        description = describe_run(run_dir)
    except (OSError, ValueError, yaml.YAMLError) as e:  # the sections that need the model say so themselves
        log.warning("report: cannot describe the run's model: %s", e)
        description = None
    exported = description is not None and description.directory is not None
    meta = description.config if exported else {}
    recipe, strip = meta.get("recipe", ""), _strip_size(description)
    sections = [
        ("Losses", lambda: _losses_section(run_dir)),
        ("Metric history", lambda: _metrics_section(run_dir)),
        ("Evaluation", lambda: _eval_section(run_dir, bool(strip))),
        ("Samples over time", lambda: _samples_section(run_dir, out_dir, recipe, strip)),
        ("Test gallery", lambda: _gallery_section(run_dir, out_dir, gallery_size, device, description)),
    ]
    body = []
    for title, build in sections:
        try:
            content = build()
        except Exception as e:  # a broken piece (unreadable data, missing folder) must not cost the whole report
            log.warning("report section %r skipped: %s", title, e)
            content = _note(f"section skipped: {type(e).__name__}: {e}")
        body.append(f"<h2>{_e(title)}</h2>{content}")
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    name = run_dir.name
    summary = f"recipe {recipe or '?'}, step {meta.get('step', '?')}" if meta else "no exported model yet"
    if meta.get("stopped_early"):  # train.early_stop ended the run: why, and where the best model is
        summary += f"; stopped early: {meta['stopped_early']}"
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(name)}: training report</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{_e(name)}</h1><p>{_e(summary)} · <a href='../'>run directory</a></p>"
        + (f"<details><summary>config.yaml</summary><pre>{_e(config_text)}</pre></details>" if config_text else "")
        + "".join(body)
        + f"<script>{SORT_SCRIPT}</script></body></html>\n"
    )
    path = out_dir / "index.html"
    write_text(path, page)
    return path
