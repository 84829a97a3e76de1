"""The tests' NumPy port of the original's `preprocess_true_boxes` against the original's own code.

    python bench/check_original_targets.py --original /path/to/yolov4-tiny-keras [--batches 300]

The CI tests check attnyolo's `assignment="original"` against `tests/losses/original_targets.py`;
this script checks that port against `utils/dataloader.py` of a checkout of the original scripts,
on random batches of integer and fractional boxes at 320, 416 and 608. The original module
imports Keras 2, OpenCV and its own `utils.utils`; only `preprocess_true_boxes` runs, so those are
stood in for by empty modules. Prints the largest difference; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.losses.original_targets import original_targets  # noqa: E402

# attnyolo's defaults (attnyolo.models.yolo), written out so that Keras is never imported here.
ANCHORS = ((10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319))
MASKS = [[3, 4, 5], [1, 2, 3]]


def original_preprocess(checkout: Path):
    """`YoloDatasets.preprocess_true_boxes` from the checkout, its imports stood in for."""
    stubs = {
        "keras": types.SimpleNamespace(utils=types.SimpleNamespace(Sequence=object)),
        "utils": types.ModuleType("utils"),
        "utils.utils": types.SimpleNamespace(cvtColor=None, preprocess_input=None),
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        namespace: dict = {}
        source = (checkout / "utils" / "dataloader.py").read_text(encoding="utf-8")
        exec(compile(source, str(checkout / "utils" / "dataloader.py"), "exec"), namespace)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return namespace["YoloDatasets"].preprocess_true_boxes


def random_batch(rng: np.random.Generator, size: int, fractional: bool, classes: int):
    batch = np.zeros((4, 30, 5))
    for b in range(len(batch)):
        k = int(rng.integers(0, 30))
        x1, y1 = rng.integers(0, size - 2, k), rng.integers(0, size - 2, k)
        x2 = np.minimum(x1 + rng.integers(2, 200, k), size)
        y2 = np.minimum(y1 + rng.integers(2, 200, k), size)
        if fractional:
            x1, y2 = x1 + rng.random(k) * 0.9, y2 - rng.random(k) * 0.5
        batch[b, :k] = np.stack([x1, y1, x2, y2, rng.integers(0, classes, k)], axis=1)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", required=True, help="a checkout of yolov4-tiny-keras")
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    preprocess = original_preprocess(Path(args.original))
    anchors = np.asarray(ANCHORS, np.float64)
    rng = np.random.default_rng(0)
    worst, positives = 0.0, 0
    for n in range(args.batches):
        size = int(rng.choice([320, 416, 608]))
        batch = random_batch(rng, size, fractional=bool(n % 2), classes=5)
        owner = types.SimpleNamespace(anchors_mask=MASKS)
        theirs = preprocess(owner, batch.copy(), (size, size), anchors, 5)
        ours = original_targets(batch.copy(), (size, size), anchors, 5, MASKS)
        for a, b in zip(theirs, ours, strict=True):
            worst = max(worst, float(np.abs(a - b).max()))
            positives += int(a[..., 4].sum())
    print(f"{args.batches} batches, {positives} positive slots: max |original - port| = {worst}")


if __name__ == "__main__":
    main()
