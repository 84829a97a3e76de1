"""attnyolo's `--protocol original` against the original scripts' own `get_map`, on random
map_out folders: the largest difference in mAP, in any class's AP and in any class's LAMR.

    python bench/check_get_map.py --original /path/to/yolov4-tiny-keras [--folders 200]

It imports the original's `utils/utils_map.py` from that checkout (it needs cv2 and
matplotlib), writes the folders with the tests' generator (`tests/metrics/get_map_port.py`),
and runs get_map on each with plots off. get_map returns only the mAP and writes per-class
figures with 2 decimals, so the original's own `voc_ap` and `log_average_miss_rate` are wrapped
to record their full-precision results, one call per class in its sorted class order.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' generator, and attnyolo from a checkout
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the detection reader imports Keras

from attnyolo.data.map_out import read_map_out  # noqa: E402
from attnyolo.engine.detection_files import read_detections  # noqa: E402
from attnyolo.metrics.voc import evaluate_voc  # noqa: E402
from tests.metrics.get_map_port import write_random_map_out  # noqa: E402


def load_utils_map(checkout: Path):
    path = checkout / "utils" / "utils_map.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found; --original is a yolov4-tiny-keras checkout")
    spec = importlib.util.spec_from_file_location("original_utils_map", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def original_figures(utils_map, folder: Path) -> tuple[float, list[float], list[float]]:
    """The original's mAP, and its AP and LAMR per class in its (sorted) class order."""
    aps, lamrs = [], []
    voc_ap, lamr = utils_map.voc_ap, utils_map.log_average_miss_rate

    def recording_voc_ap(rec, prec):
        result = voc_ap(rec, prec)
        aps.append(result[0])
        return result

    def recording_lamr(precision, fp_cumsum, num_images):
        result = lamr(precision, fp_cumsum, num_images)
        lamrs.append(result[0])
        return result

    utils_map.voc_ap, utils_map.log_average_miss_rate = recording_voc_ap, recording_lamr
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            mean = utils_map.get_map(0.5, False, score_threhold=0.5, path=str(folder))
    finally:
        utils_map.voc_ap, utils_map.log_average_miss_rate = voc_ap, lamr
    return float(mean), aps, lamrs


def attnyolo_figures(folder: Path) -> tuple[float, list[float], list[float]]:
    """attnyolo's mAP, and AP and LAMR of the classes with non-difficult ground truth."""
    dataset = read_map_out(folder)
    detections = read_detections(folder / "detection-results", dataset)
    result = evaluate_voc(
        dataset.records, detections, len(dataset.class_names), protocol="original"
    )
    counted = [c for c in result.per_class if c.num_gt > 0]  # class names are sorted
    return result.map, [c.ap for c in counted], [c.lamr for c in counted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", required=True, type=Path, help="yolov4-tiny-keras checkout")
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--images", type=int, default=40, help="images per folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first folder")
    args = parser.parse_args()
    utils_map = load_utils_map(args.original.resolve())

    worst = {"mAP": 0.0, "AP": 0.0, "LAMR": 0.0}
    classes = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.folders):
            folder = write_random_map_out(Path(tmp) / f"f{k}", args.seed + k, args.images)
            mean_o, aps_o, lamrs_o = original_figures(utils_map, folder)
            mean_a, aps_a, lamrs_a = attnyolo_figures(folder)
            if len(aps_o) != len(aps_a) or len(lamrs_o) != len(lamrs_a):
                raise SystemExit(
                    f"seed {args.seed + k}: the original gives {len(aps_o)} class APs, "
                    f"attnyolo {len(aps_a)}"
                )
            classes += len(aps_o)
            worst["mAP"] = max(worst["mAP"], abs(mean_o - mean_a))
            for key, ours, theirs in (("AP", aps_a, aps_o), ("LAMR", lamrs_a, lamrs_o)):
                for a, b in zip(ours, theirs, strict=True):
                    worst[key] = max(worst[key], abs(a - b) if not math.isnan(a) else math.inf)
    print(
        f"{args.folders} folders, {classes} class APs, {time.perf_counter() - start:.0f} s: "
        f"max |diff| mAP {worst['mAP']:.3g}, class AP {worst['AP']:.3g}, "
        f"class LAMR {worst['LAMR']:.3g}"
    )


if __name__ == "__main__":
    main()
