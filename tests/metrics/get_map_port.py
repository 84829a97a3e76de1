"""Test helpers for the original scripts' `get_map` (yolov4-tiny-keras `utils/utils_map.py`):

- `get_map_port`: a plain Python / NumPy re-statement of get_map's arithmetic, written from reading
  it, one detection at a time with loops, to test attnyolo's vectorized `protocol="original"`
  against. Nothing here is vectorized or shared with attnyolo on purpose.
- `write_random_map_out`: random map_out folders that exercise what tells the two apart (names
  with spaces, difficult boxes, duplicates, tied scores, classes without detections, with only
  difficult boxes, or without ground truth, images without detections, integer and float
  coordinates). `bench/check_get_map.py` runs the real get_map on the same folders.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import numpy as np

# Names with spaces, names that sort differently with and without ".txt" ("a-1" < "a" as files).
CLASS_POOL = [
    "cat", "dog", "traffic light", "potted plant", "person", "b", "tv monitor", "Zebra", "x_y",
]  # fmt: skip
IMAGE_STEMS = ["a", "a-1", "a_1", "a.b", "A", "img9", "img10", "img1", "000005", "0-0", "z z"]


def _file_id(path: str) -> str:
    # get_map's file id: the file name up to its first ".txt".
    return os.path.basename(path.split(".txt", 1)[0])


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f.readlines()]


def _parse_gt(line: str) -> tuple[str, list[float], bool]:
    parts = line.split()
    difficult = "difficult" in line
    if difficult:
        parts = parts[:-1]
    return " ".join(parts[:-4]), [float(v) for v in parts[-4:]], difficult


def _parse_det(line: str) -> tuple[str, float, list[float]]:
    parts = line.split()
    return " ".join(parts[:-5]), float(parts[-5]), [float(v) for v in parts[-4:]]


def _voc_ap(rec: list[float], prec: list[float]) -> float:
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def _lamr(rec: list[float], fp_cum: list[int], num_images: int) -> float:
    if not rec:
        return 0.0
    fppi = [-1.0] + [f / float(num_images) for f in fp_cum]
    miss = [1.0] + [1 - r for r in rec]
    picked = []
    for ref in np.logspace(-2.0, 0.0, num=9):
        last = max(j for j, f in enumerate(fppi) if f <= ref)
        picked.append(miss[last])
    return math.exp(np.mean(np.log(np.maximum(1e-10, picked))))


def get_map_port(
    folder: str | os.PathLike, min_overlap: float = 0.5, score_threshold: float = 0.5
) -> dict:
    """`{"map": mAP, "classes": {name: {ap, precision, recall, f1, lamr}}}` as get_map computes
    them for the map_out `folder` (only classes with a non-difficult box get an entry)."""
    gt_path = os.path.join(folder, "ground-truth")
    dr_path = os.path.join(folder, "detection-results")
    ground_truth: dict[str, list[dict]] = {}
    num_gt: dict[str, int] = {}
    num_images: dict[str, int] = {}
    for path in sorted(glob.glob(gt_path + "/*.txt")):
        objects, seen = [], set()
        for line in _lines(path):
            name, box, difficult = _parse_gt(line)
            objects.append({"name": name, "box": box, "difficult": difficult, "used": False})
            if not difficult:
                num_gt[name] = num_gt.get(name, 0) + 1
                if name not in seen:
                    num_images[name] = num_images.get(name, 0) + 1
                    seen.add(name)
        ground_truth[_file_id(path)] = objects
    dr_files = sorted(glob.glob(dr_path + "/*.txt"))

    classes = {}
    for name in sorted(num_gt):
        found = []
        for path in dr_files:
            for line in _lines(path):
                det_name, score, box = _parse_det(line)
                if det_name == name:
                    found.append((score, _file_id(path), box))
        found.sort(key=lambda d: d[0], reverse=True)  # stable: file order, then line order

        tp, fp, at = [0] * len(found), [0] * len(found), 0
        for idx, (score, file_id, bb) in enumerate(found):
            if score >= score_threshold:
                at = idx
            best, match = -1.0, None
            for obj in ground_truth[file_id]:
                if obj["name"] != name:
                    continue
                g = obj["box"]
                iw = min(bb[2], g[2]) - max(bb[0], g[0]) + 1
                ih = min(bb[3], g[3]) - max(bb[1], g[1]) + 1
                if iw > 0 and ih > 0:
                    union = (
                        (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                        + (g[2] - g[0] + 1) * (g[3] - g[1] + 1)
                        - iw * ih
                    )
                    overlap = iw * ih / union
                    if overlap > best:
                        best, match = overlap, obj
            if best >= min_overlap:
                if match["difficult"]:
                    continue  # neither: a flat point of the curve
                if match["used"]:
                    fp[idx] = 1
                else:
                    tp[idx], match["used"] = 1, True
            else:
                fp[idx] = 1
        tp_cum = list(np.cumsum(tp)) if found else []
        fp_cum = list(np.cumsum(fp)) if found else []
        rec = [float(t) / max(num_gt[name], 1) for t in tp_cum]
        prec = [float(t) / max(t + f, 1) for t, f in zip(tp_cum, fp_cum, strict=True)]
        f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(prec, rec, strict=True)]
        classes[name] = {
            "ap": _voc_ap(rec, prec),
            "precision": prec[at] if found else 0.0,
            "recall": rec[at] if found else 0.0,
            "f1": f1[at] if found else 0.0,
            "lamr": _lamr(rec, fp_cum, num_images[name]),
        }
    total = sum(c["ap"] for c in classes.values())
    return {"map": total / len(classes) if classes else 0.0, "classes": classes}


def _coordinate(value: float, integer: bool) -> str:
    return str(int(round(value))) if integer else f"{value:.{1 + int(value * 7) % 3}f}"


def write_random_map_out(folder: str | os.PathLike, seed: int, images: int = 40) -> Path:
    """A random map_out folder (`ground-truth/`, `detection-results/`) for `seed`; every image
    gets a detection file, empty when it has no detections, because get_map stops without one."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "ground-truth").mkdir(parents=True, exist_ok=True)
    (folder / "detection-results").mkdir(parents=True, exist_ok=True)
    names = list(rng.choice(CLASS_POOL, size=int(rng.integers(4, 8)), replace=False))
    only_difficult, no_ground_truth, low_scores, never_detected = names[:4]
    integer = bool(rng.random() < 0.5)  # some folders in whole pixels, as the original writes
    stems = list(IMAGE_STEMS) + [f"im{k:03d}" for k in range(max(0, images - len(IMAGE_STEMS)))]
    scores_pool = np.round(rng.uniform(0.05, 1.0, 12), 2)  # few values: many exact ties

    def score(name: str) -> str:
        value = float(rng.choice(scores_pool)) if rng.random() < 0.6 else float(rng.random())
        value = value * 0.49 if name == low_scores else value  # none reaches 0.5
        return f"{value:.6f}" if rng.random() < 0.5 else repr(value)

    def box(x: float, y: float, w: float, h: float) -> list[str]:
        return [_coordinate(v, integer) for v in (x, y, x + max(w, 0.0), y + max(h, 0.0))]

    for stem in stems[:images]:
        gt_lines, det_lines = [], []
        for _ in range(int(rng.integers(0, 6))):
            name = str(rng.choice([n for n in names if n != no_ground_truth]))
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(4, 120, 2)
            difficult = name == only_difficult or rng.random() < 0.15
            gt_lines.append(
                " ".join([name, *box(x, y, w, h)] + (["difficult"] if difficult else []))
            )
            # Jittered copies around the IoU threshold, sometimes several (duplicates).
            for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
                jx, jy, jw, jh = rng.normal(0, 0.18, 4) * [w, h, w, h]
                det_lines.append(
                    " ".join([name, score(name), *box(x + jx, y + jy, w + jw, h + jh)])
                )
        for _ in range(int(rng.integers(0, 3))):  # false positives, of any class
            name = str(rng.choice(names))
            x, y = rng.uniform(0, 300, 2)
            w, h = rng.uniform(4, 120, 2)
            det_lines.append(" ".join([name, score(name), *box(x, y, w, h)]))
        det_lines = [line for line in det_lines if not line.startswith(never_detected + " ")]
        rng.shuffle(det_lines)
        if rng.random() < 0.15:
            det_lines = []  # an image without detections
        (folder / "ground-truth" / f"{stem}.txt").write_text("".join(f"{x}\n" for x in gt_lines))
        (folder / "detection-results" / f"{stem}.txt").write_text(
            "".join(f"{x}\n" for x in det_lines)
        )
    return folder
