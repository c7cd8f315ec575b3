"""``report.html``: an :class:`~singleshot.analysis.diagnosis.Analysis` as one self-contained page (every picture
inlined as a data URI: it opens without network or the run folder), with the plots beside it as PNG files and the
galleries of the worst errors as JPEG files.

Every table cell holding a figure carries it unrounded in ``data-value`` (the page shows it rounded), so that a
test can check the page against ``metrics.json``.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from singleshot.analysis.coco_curves import plot_coco_curves
from singleshot.analysis.diagnosis import Analysis
from singleshot.analysis.sensitivity import plot_ranked_errors, plot_sensitivity
from singleshot.analysis.tide import MAIN_ERRORS, SPECIAL_ERRORS, TideError
from singleshot.data.images import save_image
from singleshot.plots import draw, plot_pr_curves, pyplot
from singleshot.types import Detection, Target

#: Colours of a gallery picture: the error's detection, and the ground truth.
ERROR_COLOUR, TRUTH_COLOUR = "#e6194b", "#3cb44b"
#: Longest side of a gallery picture, pixels.
GALLERY_SIDE = 520


def plot_tide(analysis: Analysis, out_path: Path) -> None:
    """TIDE's summary: the dAP of each main error type (left) and of the special ones (right), as bars."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [3, 1]})
    colours = ("#c0504d", "#4f81bd", "#9bbb59", "#8064a2", "#f79646", "#4bacc6")
    main = [analysis.tide.main[k] for k in MAIN_ERRORS]
    axes[0].bar(MAIN_ERRORS, main, color=colours)
    special = [analysis.tide.special[k] for k in SPECIAL_ERRORS]
    axes[1].bar(SPECIAL_ERRORS, special, color=("#7f7f7f", "#404040"))
    for ax, values in ((axes[0], main), (axes[1], special)):
        for x, v in enumerate(values):
            ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("dAP (AP50 points)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title(f"TIDE main errors (AP50 {analysis.tide.ap:.1f})")
    axes[1].set_title("special")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


def _error_picture(image: Tensor, error: TideError, det: Detection, gt: Target, class_names: Sequence[str]) -> Tensor:
    """The error (left: its detection, and its object when it has one, dashed by colour) beside the ground truth."""
    boxes, names, colours = [], [], []
    if error.detection >= 0:
        label = int(det["labels"][error.detection])
        boxes.append(det["boxes"][error.detection].float())
        names.append(f"{error.kind}: {class_names[label - 1]} {error.score:.2f}")
        colours.append(ERROR_COLOUR)
    if error.target >= 0:
        label = int(gt["labels"][error.target])
        boxes.append(gt["boxes"][error.target].float())
        names.append(("missed " if error.kind == "Miss" else "") + class_names[label - 1])
        colours.append(TRUTH_COLOUR)
    left = draw(image, torch.stack(boxes), names, colours)
    labels = gt["labels"].tolist()
    right = draw(image, gt["boxes"].float(), [class_names[k - 1] for k in labels], [TRUTH_COLOUR] * len(labels))
    return torch.cat([left, torch.full((3, image.shape[1], 6), 255, dtype=torch.uint8), right], dim=2)


def worst_errors(analysis: Analysis, per_kind: int) -> dict[str, list[TideError]]:
    """The ``per_kind`` highest-scoring false positives of each type and the largest missed objects."""
    out = {}
    for kind in MAIN_ERRORS:
        errors = [e for e in analysis.tide.errors if e.kind == kind]
        key = (lambda e: -e.area) if kind == "Miss" else (lambda e: -e.score)
        out[kind] = sorted(errors, key=key)[:per_kind]
    return out


def write_galleries(
    analysis: Analysis,
    out_dir: Path,
    image_of: Callable[[int], Tensor],
    detections: Sequence[Detection],
    ground_truths: Sequence[Target],
    per_kind: int,
) -> dict[str, list[tuple[Path, TideError]]]:
    """Draw :func:`worst_errors` into ``out_dir/<kind>_<k>.jpg``; returns the files written per type."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[tuple[Path, TideError]]] = {}
    for kind, errors in worst_errors(analysis, per_kind).items():
        written[kind] = []
        for k, error in enumerate(errors):
            picture = _error_picture(
                image_of(error.image), error, detections[error.image], ground_truths[error.image], analysis.class_names
            )
            path = out_dir / f"{kind}_{k}.jpg"
            save_image(_shrunk(picture), path, quality=85)
            written[kind].append((path, error))
    return written


def _shrunk(picture: Tensor) -> Tensor:
    """``picture`` with its longest side at most :data:`GALLERY_SIDE` pixels (the 2 images side by side count)."""
    h, w = picture.shape[1:]
    scale = GALLERY_SIDE * 2 / max(h, w)
    if scale >= 1:
        return picture
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resized = Image.fromarray(picture.permute(1, 2, 0).numpy()).resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def write_plots(analysis: Analysis, out_dir: Path) -> list[Path]:
    """Every plot of the analysis into ``out_dir``; returns the files, in the order the page shows them."""
    files = [out_dir / "tide.png"]
    plot_tide(analysis, files[-1])
    for area in analysis.curves.precision:
        if analysis.curves.precision[area]["FN"][0] >= 0:  # the range has objects
            files.append(out_dir / f"coco_curves_{area}.png")
            plot_coco_curves(analysis.curves, files[-1], area)
    files.append(out_dir / "ranked_errors.png")
    plot_ranked_errors(analysis.ranked, files[-1])
    files.append(out_dir / "sensitivity.png")
    plot_sensitivity(analysis.sensitivity, files[-1])
    files.append(out_dir / "pr_curve.png")
    plot_pr_curves(analysis.metrics, files[-1])
    return files


def _data_uri(path: Path) -> str:
    kind = "png" if path.suffix == ".png" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(value: object, digits: int = 2) -> str:
    """A ``<td>`` showing ``value`` rounded, with the exact figure in ``data-value`` (``-`` for none or nan)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td data-value="null">-</td>'
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"<td>{html.escape(str(value))}</td>"
    shown = f"{value:d}" if isinstance(value, int) else f"{value:.{digits}f}"
    return f'<td data-value="{value!r}">{shown}</td>'


def _table(table_id: str, header: Sequence[str], rows: Sequence[tuple[str, Sequence[object]]], digits: int = 2) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr data-row="{html.escape(name)}"><th>{html.escape(name)}</th>' + "".join(_cell(v, digits) for v in values)
        + "</tr>"
        for name, values in rows
    )  # fmt: skip  # one row per line of the comprehension
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _tables(analysis: Analysis) -> dict[str, str]:
    """The page's tables by id."""
    tide, metrics = analysis.tide, analysis.metrics
    kinds = [*MAIN_ERRORS, *SPECIAL_ERRORS]
    tables = {
        "metrics": _table(
            "metrics", ["class", "objects", "detections", "AP50 (VOC07)", "AP50"],
            [(name, [metrics.num_positives[k], metrics.num_detections[k], metrics.ap50_07[k], metrics.ap50[k]])
             for k, name in enumerate(analysis.class_names)],
            digits=4,
        ),
        "tide-main": _table(
            "tide-main", ["", "AP50", *kinds],
            [("dAP", [tide.ap, *tide.main.values(), *tide.special.values()]),
             ("count", [None, *tide.counts.values(), None, None])],
        ),
        "tide-class": _table(
            "tide-class", ["class", "AP50", *kinds],
            [(name, [row["AP"], *(row[k] for k in kinds)]) for name, row in tide.per_class.items()],
        ),
        "tide-size": _table(
            "tide-size", ["objects", *MAIN_ERRORS, *(f"{k} count" for k in MAIN_ERRORS)],
            [(size, [row[k] for k in MAIN_ERRORS] + [int(row[f"{k} count"]) for k in MAIN_ERRORS])
             for size, row in tide.by_size.items()],
        ),
        "coco-areas": _table(
            "coco-areas", ["objects", *analysis.curves.curves],
            [(area, list(analysis.curves.area_under(area).values())) for area in analysis.curves.precision],
            digits=3,
        ),
        "thresholds": _table(
            "thresholds", ["class", "objects", "threshold", "precision", "recall", "F1", "target threshold",
                           "target recall"],
            [(t.name, [t.objects, t.threshold, t.precision, t.recall, t.f1, t.target_threshold, t.target_recall])
             for t in analysis.thresholds],
            digits=3,
        ),
    }  # fmt: skip  # each table's header and rows kept together
    if analysis.priors is not None:
        keys = ("objects", "uncovered", "missed_uncovered", "missed_covered", "loc_uncovered", "loc_covered")
        tables["priors"] = _table(
            "priors", ["group", *keys], [(g, [row[k] for k in keys]) for g, row in analysis.priors.rows.items()]
        )
    return tables


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
thead th { background: #f0f0f0; }
tbody th { text-align: left; font-weight: normal; }
img.plot { max-width: 100%; margin: 8px 0; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure { margin: 0; width: 380px; }
.gallery img { width: 100%; }
figcaption { font-size: 12px; color: #555; }
li { margin: 4px 0; }
"""


def write_report(
    analysis: Analysis,
    out_dir: Path,
    *,
    title: str,
    image_of: Callable[[int], Tensor] | None = None,
    detections: Sequence[Detection] = (),
    ground_truths: Sequence[Target] = (),
    per_kind: int = 6,
) -> Path:
    """Write the plots, the galleries (when ``image_of`` gives each image as uint8 ``[3, H, W]`` by index) and
    ``out_dir/report.html``; returns the page's path."""
    plots = write_plots(analysis, out_dir)
    galleries = (
        write_galleries(analysis, out_dir / "errors", image_of, detections, ground_truths, per_kind)
        if image_of is not None and per_kind > 0
        else {}
    )
    tables = _tables(analysis)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{analysis.metrics.num_images} images, {sum(analysis.metrics.num_positives)} objects, "
        f"{sum(analysis.metrics.num_detections)} detections.</p>",
        "<h2>What to do</h2><ul id='advice'>" + "".join(f"<li>{html.escape(a)}</li>" for a in analysis.advice()),
        "</ul><h2>Metrics</h2>",
        tables["metrics"],
        "<h2>TIDE errors</h2><p>dAP: AP50 points gained by fixing only that type (Bolya et al. 2020).</p>",
        tables["tide-main"],
        tables["tide-class"],
        "<h3>By object size (errors of that size fixed)</h3>",
        tables["tide-size"],
    ]
    if analysis.priors is not None:
        parts += [
            "<h2>Objects no default box reaches</h2>",
            f"<p>{analysis.priors.uncovered_share:.1%} of the objects have no default box at IoU 0.5 "
            "after the model's resize.</p>",
            tables["priors"],
        ]
    parts += ["<h2>Per-class score thresholds</h2>", tables["thresholds"]]
    parts += ["<h2>COCO analyze curves</h2>", tables["coco-areas"]]
    parts += [f"<img class='plot' alt='{p.stem}' src='{_data_uri(p)}'>" for p in plots]
    for kind, files in galleries.items():
        if not files:
            continue
        what = "largest missed objects" if kind == "Miss" else f"highest-scoring {kind} errors"
        parts.append(f"<h2>Gallery: {what}</h2><div class='gallery' id='gallery-{kind}'>")
        for path, error in files:
            caption = f"image {error.image}" + (f", score {error.score:.2f}" if error.detection >= 0 else "")
            parts.append(
                f"<figure><img alt='{kind}' src='{_data_uri(path)}'><figcaption>{caption}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    page = out_dir / "report.html"
    page.write_text("\n".join(parts))
    return page


__all__ = ["plot_tide", "worst_errors", "write_galleries", "write_plots", "write_report"]
