"""`attnyolo evaluate`: detection over a data set split and its VOC and COCO figures.

This is the one evaluator: training calls `evaluate_model` with the same defaults, so an
in-training mAP and a later `attnyolo evaluate` of the same checkpoint and split agree.
The defaults are the original `get_map.py`'s: confidence 0.001, NMS IoU 0.5, 100 boxes per class,
plain resize, VOC AP at IoU 0.5 with all-point interpolation, P/R/F1 at score 0.5.

`protocol="original"` reads the VOC figures as the original's `get_map` does, to the number (see
`attnyolo.metrics.voc`); every report says which protocol it was computed under.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from attnyolo.data.datasets import coco_category_ids
from attnyolo.data.records import Dataset, TextRecord
from attnyolo.engine.detection_files import write_map_out
from attnyolo.engine.plots import plot_bars, plot_pr_curve, safe_name
from attnyolo.engine.predict import Predictor, open_model
from attnyolo.inference.decoder import Detections
from attnyolo.inference.stream import file_items
from attnyolo.metrics.coco import (
    STAT_NAMES,
    COCOResult,
    coco_ground_truth,
    coco_results,
    evaluate_coco,
)
from attnyolo.metrics.voc import VOCResult, evaluate_voc
from attnyolo.utils import atomic_write

# How each protocol detects and scores. "voc": the original get_map.py's detection settings,
# attnyolo's output (float boxes clipped to the image) and the VOC devkit's arithmetic; training's
# validation uses the same by default. "original": get_map.py to the number: its settings, Pillow
# resizing, boxes and scores as yolo.py's get_map_txt writes them, get_map's arithmetic.
# "eval_callback": the original train.py's EvalCallback (confidence 0.05, letterbox, the top 100
# boxes of an image), scored with get_map (the fallback it uses, pycocotools not being among the
# original's requirements).
_GET_MAP = {"confidence": 0.001, "nms_iou": 0.5, "max_per_class": 100, "letterbox": False}
_AS_WRITTEN = {"resize_filter": "pillow", "original_output": True}
EVALUATION_PROTOCOLS = {
    "voc": {"metric": "voc", "detection": _GET_MAP},
    "original": {"metric": "original", "detection": {**_GET_MAP, **_AS_WRITTEN}},
    "eval_callback": {
        "metric": "original",
        "detection": {
            **_GET_MAP,
            "confidence": 0.05,
            "letterbox": True,
            "max_detections": 100,
            **_AS_WRITTEN,
        },
    },
}
DETECTION_DEFAULTS = EVALUATION_PROTOCOLS["voc"]["detection"]


def _protocol(name: str) -> dict:
    if name not in EVALUATION_PROTOCOLS:
        raise ValueError(
            f"unknown protocol {name!r}; choose from {', '.join(EVALUATION_PROTOCOLS)}"
        )
    return EVALUATION_PROTOCOLS[name]


@dataclass
class Evaluation:
    """Everything an evaluation computed: the JSON-ready `report`, the VOC result with its curves,
    the COCO result, and the detections per record (None where the image could not be read)."""

    report: dict
    voc: VOCResult
    coco: COCOResult | None
    detections: list[Detections | None]

    @property
    def map50(self) -> float:
        return self.voc.map


def detect(
    model,
    dataset: Dataset,
    *,
    confidence: float = DETECTION_DEFAULTS["confidence"],
    nms_iou: float = DETECTION_DEFAULTS["nms_iou"],
    max_per_class: int = DETECTION_DEFAULTS["max_per_class"],
    letterbox: bool | None = None,
    max_detections: int | None = None,
    resize_filter: str | None = None,
    original_output: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    fuse: bool = True,
) -> list[Detections | None]:
    """Runs the detector (any model format: see `Predictor`) over every record through the one
    streaming loop. An unreadable image is reported (a warning naming it) and gets None. The
    options are `Predictor`'s."""
    predictor = Predictor(
        model,
        confidence=confidence,
        nms_iou=nms_iou,
        max_per_class=max_per_class,
        max_detections=max_detections,
        letterbox=letterbox,
        resize_filter=resize_filter,
        original_output=original_output,
        batch_size=batch_size,
        fuse=fuse,
    )

    results: list[Detections | None] = []
    records = dataset.records
    items = file_items(record.image for record in records)
    with tqdm(total=len(records), desc="detect", unit="img", disable=not progress) as bar:
        for result in predictor.stream(items, keep_images=False):
            if result.error is not None:
                warnings.warn(f"skipped: {result.error}", stacklevel=2)
            results.append(result.detections)
            bar.update()
    return results


def _coco_json(dataset: Dataset) -> Path | None:
    """The COCO JSON a data set was read from, if it was."""
    source = Path(dataset.source) if dataset.source else None
    return source if source is not None and source.suffix == ".json" and source.is_file() else None


def _category_ids(dataset: Dataset) -> list[int]:
    """COCO category id of each class: the data set's own for COCO, else 1..C."""
    source = _coco_json(dataset)
    if source is None:
        return list(range(1, len(dataset.class_names) + 1))
    return coco_category_ids(source, dataset.class_names)  # the names the reader matched


def _coco_ground_truth(dataset: Dataset, kept: list[int]) -> tuple[dict, list]:
    """The COCO ground truth and image ids of the evaluated records. A COCO data set is evaluated
    against its own JSON (crowd regions and segmentation areas included)."""
    source = _coco_json(dataset)
    if source is not None:
        full = json.loads(source.read_text())
        image_ids = [dataset.records[i].image_id for i in kept]
        wanted = set(image_ids)
        ground_truth = {
            "images": [im for im in full["images"] if im["id"] in wanted],
            "annotations": [a for a in full["annotations"] if a["image_id"] in wanted],
            "categories": full["categories"],
        }
        return ground_truth, image_ids
    records = [dataset.records[i] for i in kept]
    return coco_ground_truth(records, dataset.class_names, kept, _category_ids(dataset)), kept


def _clean(value):
    """JSON has no NaN: a figure that does not exist (no ground truth) is null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def evaluate(
    dataset: Dataset,
    detections: Sequence[Detections | None],
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    score_threshold: float = 0.5,
    protocol: str = "voc",
    coco: bool = True,
    coco_engine: str = "auto",
    settings: dict | None = None,
) -> Evaluation:
    """VOC and COCO figures of `detections` (aligned with `dataset.records`; None = skipped).

    `protocol` is "voc", "original" or "eval_callback" (`EVALUATION_PROTOCOLS`); the last two
    score with the original scripts' `get_map`, whose IoU adds 1 to the boxes' sizes: give it
    boxes as the original's text files hold them (a map_out folder, `original_ground_truth`).
    """
    if len(detections) != len(dataset.records):
        raise ValueError(f"{len(detections)} detection sets for {len(dataset.records)} images")
    kept = [i for i, d in enumerate(detections) if d is not None]
    if not kept:
        raise ValueError(f"{dataset.source}: no image could be evaluated")
    ground_truth = [dataset.records[i] for i in kept]
    found = [detections[i] for i in kept]
    voc = evaluate_voc(
        ground_truth,
        found,
        num_classes=len(dataset.class_names),
        iou_threshold=iou_threshold,
        use_07_metric=use_07_metric,
        score_threshold=score_threshold,
        protocol=_protocol(protocol)["metric"],
    )
    coco_result = None
    if coco:
        gt, image_ids = _coco_ground_truth(dataset, kept)
        results = coco_results(found, image_ids, _category_ids(dataset))
        coco_result = evaluate_coco(gt, results, coco_engine)
    classes = []
    for k, name in enumerate(dataset.class_names):
        c = voc.per_class[k]
        entry = {
            "class": name,
            "num_gt": c.num_gt,
            "num_detections": c.num_detections,
            "ap": c.ap,
            "precision": c.precision_at,
            "recall": c.recall_at,
            "f1": c.f1_at,
            "lamr": c.lamr,
            "tp": c.tp,
            "fp": c.fp,
        }
        if coco_result is not None:
            entry["coco_ap"] = coco_result.per_class_ap[k]
            entry["coco_ap50"] = coco_result.per_class_ap50[k]
        classes.append(entry)
    report = {
        "data": dataset.source,
        "images": len(kept),
        "skipped_images": [
            str(dataset.records[i].image) for i, d in enumerate(detections) if d is None
        ],
        "settings": {
            **(settings or {}),
            "protocol": protocol,
            "pixel_offset": voc.pixel_offset,
            "iou_threshold": iou_threshold,
            "ap_interpolation": "11-point (VOC2007)" if use_07_metric else "all-point",
            "score_threshold": score_threshold,
        },
        "voc": {
            "map": voc.map,
            "mean_precision": _nanmean([c["precision"] for c in classes if c["num_gt"]]),
            "mean_recall": _nanmean([c["recall"] for c in classes if c["num_gt"]]),
            "mean_f1": _nanmean([c["f1"] for c in classes if c["num_gt"]]),
            "mean_lamr": _nanmean([c["lamr"] for c in classes if c["num_gt"]]),
        },
        "coco": None
        if coco_result is None
        else {**coco_result.stats, "engine": coco_result.engine},
        "classes": classes,
    }
    return Evaluation(_clean(report), voc, coco_result, list(detections))


def _nanmean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def original_ground_truth(dataset: Dataset) -> Dataset:
    """The ground truth the original's get_map.py compares: a VOC split re-read with its boxes as
    the XML writes them (`read_voc(as_written=True)`: 1-based, not clipped); other data sets as
    they are (map_out folders and annotation lines are read as written already)."""
    from attnyolo.data.voc import is_voc_root, read_voc

    source = Path(dataset.source) if dataset.source else None
    if source is None or dataset.split is None or not is_voc_root(source):
        return dataset
    if dataset.records and all(isinstance(r, TextRecord) for r in dataset.records):
        return dataset  # read as written already
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported once already, when the split was read
        written = read_voc(source, dataset.split, dataset.class_names, as_written=True)
    ids = [r.image_id for r in dataset.records]
    if [r.image_id for r in written.records] != ids:
        raise ValueError(f"{source}: the {dataset.split} split changed while being evaluated")
    return written


def evaluate_model(
    model,
    dataset: Dataset,
    *,
    protocol: str = "voc",
    confidence: float | None = None,
    nms_iou: float | None = None,
    max_per_class: int | None = None,
    letterbox: bool | None = None,
    max_detections: int | None = None,
    resize_filter: str | None = None,
    batch_size: int = 8,
    progress: bool = True,
    fuse: bool = True,
    **evaluate_options,
) -> Evaluation:
    """Detection over `dataset` with the settings of `protocol` (`EVALUATION_PROTOCOLS`; "voc": the
    original get_map.py's), each overridden where given, then `evaluate` under `protocol`.

    `model` is a `YOLOv4Tiny`, a model file of any format, or a runtime (see
    `attnyolo.engine.predict.open_model`). Under "voc" a model that knows the geometry it was
    trained with (its letterbox and resize filter, which attnyolo's training records) is fed that
    way unless told; the original's protocols keep their own, as the original. `fuse`: a Keras
    model runs with its batch norms folded (False for a model that is still training)."""
    runtime = open_model(model, fuse=fuse)
    trained = runtime.config
    if letterbox is None and protocol == "voc" and trained.letterbox is not None:
        letterbox = bool(trained.letterbox)
    given = {
        "confidence": confidence,
        "nms_iou": nms_iou,
        "max_per_class": max_per_class,
        "letterbox": letterbox,
        "max_detections": max_detections,
        "resize_filter": resize_filter,
    }
    detection = {
        **_protocol(protocol)["detection"],
        **{k: v for k, v in given.items() if v is not None},
    }
    detections = detect(runtime, dataset, batch_size=batch_size, progress=progress, **detection)
    settings = {**detection, "input_size": list(trained.input_size)}
    if protocol != "voc":
        dataset = original_ground_truth(dataset)
    return evaluate(dataset, detections, settings=settings, protocol=protocol, **evaluate_options)


def _pct(value) -> str:
    return "  n/a" if value is None else f"{value * 100:6.2f}"


def format_table(report: dict) -> str:
    """The terminal table: per class VOC AP, P/R/F1 at the score threshold, LAMR, COCO AP."""
    coco = report["coco"] is not None
    settings = report["settings"]
    width = max(8, *(len(c["class"]) for c in report["classes"]))
    head = f"{'class':<{width}} {'GT':>6} {'dets':>7}" + "".join(
        f" {name:>6}" for name in ("AP50", "P", "R", "F1", "LAMR")
    )
    if coco:
        head += f" {'AP':>6} {'AP50c':>6}"
    lines = [head, "-" * len(head)]
    for c in report["classes"]:
        line = (
            f"{c['class']:<{width}} {c['num_gt']:>6} {c['num_detections']:>7} {_pct(c['ap'])} "
            f"{_pct(c['precision'])} {_pct(c['recall'])} {_pct(c['f1'])} {_pct(c['lamr'])}"
        )
        if coco:
            line += f" {_pct(c['coco_ap'])} {_pct(c['coco_ap50'])}"
        lines.append(line)
    voc = report["voc"]
    lines.append("-" * len(lines[1]))
    lines.append(
        f"VOC mAP@{settings['iou_threshold']:g} ({settings['ap_interpolation']}), "
        f"protocol {settings['protocol']}: "
        f"{_pct(voc['map']).strip()}%   P/R/F1 at score {settings['score_threshold']:g}: "
        f"{_pct(voc['mean_precision']).strip()} / {_pct(voc['mean_recall']).strip()} / "
        f"{_pct(voc['mean_f1']).strip()}   LAMR {_pct(voc['mean_lamr']).strip()}"
    )
    if coco:
        stats = report["coco"]
        lines.append(
            "COCO: " + "  ".join(f"{name} {_pct(stats[name]).strip()}" for name in STAT_NAMES[:6])
        )
        lines.append(
            "      " + "  ".join(f"{name} {_pct(stats[name]).strip()}" for name in STAT_NAMES[6:])
        )
    lines.append(
        f"{report['images']} images"
        + (
            f", {len(report['skipped_images'])} skipped (unreadable)"
            if report["skipped_images"]
            else ""
        )
    )
    return "\n".join(lines)


def _markdown(report: dict) -> str:
    coco = report["coco"] is not None
    lines = [
        "# Evaluation report",
        "",
        f"- data: `{report['data']}`"
        + (f", split `{report['split']}`" if report.get("split") else ""),
    ]
    if report.get("model"):
        lines.append(f"- model: `{report['model']}`")
    lines += [f"- {k}: `{v}`" for k, v in report["settings"].items()]
    lines += [f"- images: {report['images']}, skipped: {len(report['skipped_images'])}", ""]
    voc, settings = report["voc"], report["settings"]
    lines += [
        f"**VOC mAP@{settings['iou_threshold']:g} (protocol {settings['protocol']}): "
        f"{_pct(voc['map']).strip()}%**",
        "",
    ]
    if coco:
        lines += ["| " + " | ".join(STAT_NAMES) + " |", "|" + "---:|" * len(STAT_NAMES)]
        lines += ["| " + " | ".join(_pct(report["coco"][n]).strip() for n in STAT_NAMES) + " |", ""]
    columns = ["class", "GT", "detections", "AP50", "P", "R", "F1", "LAMR"]
    columns += ["COCO AP", "COCO AP50"] if coco else []
    lines += ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    for c in report["classes"]:
        cells = [c["class"], str(c["num_gt"]), str(c["num_detections"])]
        cells += [_pct(c[k]).strip() for k in ("ap", "precision", "recall", "f1", "lamr")]
        if coco:
            cells += [_pct(c["coco_ap"]).strip(), _pct(c["coco_ap50"]).strip()]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Figures in percent; n/a: no ground truth for the class. Plots in `plots/`."]
    return "\n".join(lines) + "\n"


def write_report(
    evaluation: Evaluation,
    dataset: Dataset,
    output_dir: str | os.PathLike,
    *,
    plots: bool = True,
    map_out: bool = False,
) -> Path:
    """Writes `report.json`, `report.md`, `detections_coco.json`, PNG plots and optionally the
    original's `map_out` text files into `output_dir`."""
    output = Path(output_dir)
    report = evaluation.report
    atomic_write(output / "report.json", json.dumps(report, indent=2))
    atomic_write(output / "report.md", _markdown(report))
    kept = [i for i, d in enumerate(evaluation.detections) if d is not None]
    results = coco_results(
        [evaluation.detections[i] for i in kept],
        [dataset.records[i].image_id for i in kept],
        _category_ids(dataset),
    )
    atomic_write(output / "detections_coco.json", json.dumps(results))
    if plots:
        names = dataset.class_names
        for k, name in enumerate(names):
            c = evaluation.voc.per_class[k]
            if c.num_gt or c.num_detections:
                plot_pr_curve(
                    c.recall,
                    c.precision,
                    c.ap,
                    name,
                    output / "plots" / f"pr_{k:03d}_{safe_name(name)}.png",
                )
        aps = [c.ap for c in evaluation.voc.per_class]
        plot_bars(
            names,
            aps,
            f"VOC mAP@{report['settings']['iou_threshold']:g} = {evaluation.voc.map * 100:.2f}%",
            "AP (%)",
            output / "plots" / "ap.png",
            True,
        )
        counts = [float(c.num_gt) for c in evaluation.voc.per_class]
        plot_bars(
            names,
            counts,
            f"ground-truth boxes ({report['images']} images)",
            "boxes",
            output / "plots" / "gt_counts.png",
        )
    if map_out:
        write_map_out(output / "map_out", dataset, evaluation.detections)
    return output


def evaluate_files(
    data: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    detections: str | os.PathLike | None = None,
    split: str = "test",
    class_names: Sequence[str] | str | None = None,
    output_dir: str | os.PathLike = "evaluation",
    plots: bool = True,
    map_out: bool = False,
    detection_options: dict | None = None,
    protocol: str = "voc",
    **evaluate_options,
) -> Evaluation:
    """What `attnyolo evaluate` does: a model file over a data split, or given detections against
    the ground truth; writes the report into `output_dir`.

    Args:
        data: any data set form `load_dataset` accepts (VOC root, COCO JSON, YOLO data YAML,
            annotation lines, attnyolo data YAML, and without a model the original's map_out
            folder). Without a model the images need not be present where the annotations
            state all the metric needs (a COCO JSON, a map_out folder).
        model: a `.keras` detector; its class names define the class ids.
        detections: instead of a model, a COCO results JSON or a folder of the original's
            `detection-results/*.txt` files; for a map_out `data` without a model, by default
            its `detection-results/` folder. An image without a text file has no detections
            (a printed note lists them; the original `get_map` stops there instead).
        split: the split to evaluate.
        class_names: class names (or a names file) for the data when no model gives them.
        detection_options: `detect` options (confidence, nms_iou, ...).
        protocol: "voc", or "original" for the original scripts' `get_map` to the number.
        **evaluate_options: `evaluate` options (iou_threshold, use_07_metric, protocol, ...).
    """
    from attnyolo.data.datasets import load_dataset
    from attnyolo.data.map_out import is_map_out, map_out_folders
    from attnyolo.engine.detection_files import images_without_text_detections, read_detections

    if model is None and detections is None and is_map_out(Path(data)):
        detections = map_out_folders(data)[1]
        if not detections.is_dir():
            raise FileNotFoundError(f"{data}: no detection-results/ folder beside ground-truth/")
    if (model is None) == (detections is None):
        raise ValueError("Give either a model or --detections (not both)")
    # Any model format: a .keras file, or an export (ONNX, TFLite, SavedModel).
    detector = open_model(model) if model is not None else None
    names = list(detector.config.classes) if detector is not None else class_names
    # Given detections need only what the metric needs, not the images.
    dataset = load_dataset(
        data, split=split, class_names=names, require_images=detector is not None
    )
    if protocol != "voc":
        # The original compares the boxes as written; map_out and report see the same ones.
        dataset = original_ground_truth(dataset)
    if detections is not None and Path(detections).is_dir():
        missing = images_without_text_detections(detections, dataset)
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            print(
                f"note: {len(missing)} of {len(dataset.records)} images have no detections file "
                f"in {detections} and count as images without detections ({shown}); the "
                "original get_map stops at such an image instead"
            )
    if detector is not None:
        evaluation = evaluate_model(
            detector, dataset, **(detection_options or {}), protocol=protocol, **evaluate_options
        )
    else:
        found = read_detections(detections, dataset, _category_ids(dataset))
        evaluation = evaluate(
            dataset,
            found,
            settings={"detections": str(detections)},
            protocol=protocol,
            **evaluate_options,
        )
    evaluation.report.update({"split": split, "model": None if model is None else str(model)})
    write_report(evaluation, dataset, output_dir, plots=plots, map_out=map_out)
    return evaluation
