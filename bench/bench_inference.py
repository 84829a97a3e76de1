"""Inference speed at 416x416, in one run: attnyolo on Keras/TensorFlow (batch norm folded, and
unfolded for reference) and as its exported ONNX model in onnxruntime, next to OpenCV's DNN
module running the same weights from Darknet files, at batch 1 and 8, for every attention type.

Network only: a ready batch through the network. End to end: image files to drawn results, as
`attnyolo predict` runs them (`attnyolo.engine.fps.measure_fps`: the streaming loop reads the
next images in threads; decode, NMS, drawing) and as an OpenCV DNN program does (`cv2.imread`,
`blobFromImages`, forward, the region outputs filtered, `NMSBoxesBatched`, `cv2.rectangle`).
The images are voc20's test photographs (`../shared/data`), else synthetic 640x480 JPEGs. The
models have random weights with the head biases set so that every image gives 169 boxes
to suppress and about ten to draw, the same for every runtime. Goals, as ratios in this run:

- Keras/TensorFlow network only at most 1.15x OpenCV's;
- the ONNX path end to end no slower than OpenCV's end to end;
- end to end at most 1.15x network only.

    python bench/bench_inference.py [--repeats 20] [--attention none cbam ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from attnyolo.engine.export import export_model  # noqa: E402
from attnyolo.engine.fps import measure_fps, synthetic_image_file, time_calls  # noqa: E402
from attnyolo.engine.predict import Predictor  # noqa: E402
from attnyolo.layers import attention_names  # noqa: E402
from attnyolo.models import YOLOv4Tiny, save_darknet, save_detector  # noqa: E402

try:
    from _report import write_section  # run as `python bench/bench_inference.py`
except ImportError:
    from bench._report import write_section

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "voc20" / "VOC2007"
CONFIDENCE, NMS_IOU = 0.5, 0.3  # `attnyolo predict`'s defaults, the original's
GOAL = 1.15
FIELDS = ("attention", "runtime", "batch", "network_ms", "e2e_ms")


def busy_model(attention: str | None) -> YOLOv4Tiny:
    """80 classes at 416, random weights; the stride-32 head's largest anchor says "class 0,
    sure" in every cell, so each image gives 169 boxes to decode and suppress, and about ten
    to draw."""
    model = YOLOv4Tiny(80, input_size=416, attention=attention)
    layer = model.get_layer("head32_out")
    kernel, bias = layer.get_weights()
    bias = bias.reshape(3, -1)
    bias[2, 4], bias[2, 5] = 4.0, 4.0
    layer.set_weights([kernel * 0.01, bias.reshape(-1)])
    return model


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


class OpenCVDetector:
    """The usual OpenCV DNN program for a Darknet YOLO: its region layers decode the boxes (score
    = objectness x class probability), then class-wise NMS."""

    def __init__(self, cfg: Path, weights: Path, class_names: list[str]):
        self.net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        self.outputs = self.net.getUnconnectedOutLayersNames()
        self.raw = ["conv_29", "conv_36"]
        self.class_names = class_names

    def network(self, blob: np.ndarray) -> None:
        self.net.setInput(blob)
        self.net.forward(self.raw)

    def end_to_end(self, files: list[Path]) -> None:
        images = [cv2.imread(str(f)) for f in files]
        blob = cv2.dnn.blobFromImages(images, 1 / 255.0, (416, 416), swapRB=True, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.outputs)
        for i, image in enumerate(images):
            rows = np.concatenate([out[i] if out.ndim == 3 else out for out in outs])
            scores = rows[:, 5:]
            classes = scores.argmax(1)
            best = scores[np.arange(len(rows)), classes]
            keep = best >= CONFIDENCE
            h, w = image.shape[:2]
            cx, cy, bw, bh = (rows[keep, k] for k in range(4))
            boxes = np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], 1)
            kept = cv2.dnn.NMSBoxesBatched(
                boxes.tolist(), best[keep].tolist(), classes[keep].tolist(), CONFIDENCE, NMS_IOU
            )
            for k in np.asarray(kept, np.int64).reshape(-1):
                x, y, bw_, bh_ = (int(v) for v in boxes[k])
                cv2.rectangle(image, (x, y), (x + bw_, y + bh_), (0, 255, 0), 2)
                label = f"{self.class_names[classes[keep][k]]} {best[keep][k]:.2f}"
                cv2.putText(image, label, (x, max(0, y - 4)), 0, 0.5, (0, 255, 0), 1)


def opencv_end_to_end_ms(detector, files, batch, repeats, warmup) -> float:
    """ms per image: `per_round` images in batches, the same rounds as `measure_fps`'s."""
    per_round = max(16, 2 * batch)
    chosen = [files[i % len(files)] for i in range(per_round)]

    def one_round():
        for start in range(0, per_round, batch):
            detector.end_to_end(chosen[start : start + batch])

    rounds = max(3, repeats // 5)
    return median_ms(time_calls(one_round, rounds, 1)) / per_round


def measure(runtime: str, runner, files, batch: int, args) -> tuple[float, float | None]:
    """ms per image: network only and end to end (None where not measured)."""
    if isinstance(runner, OpenCVDetector):
        # The same photographs as the other runtimes' network figures.
        images = [cv2.imread(str(files[i % len(files)])) for i in range(batch)]
        blob = cv2.dnn.blobFromImages(images, 1 / 255.0, (416, 416), swapRB=True, crop=False)
        net = median_ms(time_calls(lambda: runner.network(blob), args.repeats, args.warmup))
        return net / batch, opencv_end_to_end_ms(runner, files, batch, args.repeats, args.warmup)
    report = measure_fps(
        runner,
        files,
        batch_size=batch,
        repeats=args.repeats,
        warmup=args.warmup,
        end_to_end=runtime != "keras (unfolded)",
        stages=False,
    )
    e2e = report["end_to_end"]["ms_per_image"] if "end_to_end" in report else None
    return report["network"]["ms_per_image"], e2e


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=2, help="the lowest median is kept")
    parser.add_argument("--attention", nargs="+", default=None, help="default: every type")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--json", default=str(ROOT / "docs" / "inference_results.json"))
    args = parser.parse_args()
    attentions = args.attention or ["none", *attention_names()]
    work = Path(tempfile.mkdtemp(prefix="attnyolo-bench-inference-"))
    if SHARED.is_dir():
        names = (SHARED / "ImageSets/Main/test.txt").read_text().split()[:16]
        files = [SHARED / "JPEGImages" / f"{n}.jpg" for n in names]
        images_used = "the first 16 voc20 test photographs (../shared/data/voc20)"
    else:
        files = [synthetic_image_file(work)]
        images_used = "a synthetic 640x480 JPEG (../shared/data absent)"
    rows = []  # (attention, runtime, batch, network ms/img, end-to-end ms/img)
    opencv = {}
    started = time.time()
    for attention in attentions:
        model = busy_model(None if attention == "none" else attention)
        path = work / f"{attention}.keras"
        save_detector(model, path)
        onnx = export_model(path, work / f"{attention}.onnx", "onnx").path
        runners = {
            "keras (BN folded)": Predictor(path, confidence=CONFIDENCE, nms_iou=NMS_IOU),
            "onnxruntime": Predictor(onnx, confidence=CONFIDENCE, nms_iou=NMS_IOU),
        }
        if attention == "none":
            runners["keras (unfolded)"] = Predictor(
                path, confidence=CONFIDENCE, nms_iou=NMS_IOU, fuse=False
            )
            save_darknet(model, work / "none.weights", work / "none.cfg")
            detector = OpenCVDetector(work / "none.cfg", work / "none.weights", model.class_names)
        if attention == "none":
            runners["OpenCV DNN (Darknet files)"] = detector
        for batch in args.batches:
            best: dict[str, tuple[float, float | None]] = {}
            # Rounds over the runtimes in turn, the lowest median of each kept: a noisy
            # neighbour, or one runtime's threads still spinning after its turn, costs a round.
            for _ in range(args.rounds):
                for runtime, runner in runners.items():
                    time.sleep(0.5)
                    net, e2e = measure(runtime, runner, files, batch, args)
                    old = best.get(runtime, (net, e2e))
                    best[runtime] = (
                        min(old[0], net),
                        None if e2e is None else min(old[1], e2e),
                    )
            for runtime, (net, e2e) in best.items():
                rows.append((attention, runtime, batch, net, e2e))
                print(rows[-1], flush=True)
                if runtime.startswith("OpenCV"):
                    opencv[batch] = (net, e2e)
    minutes = (time.time() - started) / 60
    write_report(args, rows, opencv, images_used, minutes)


def write_report(args, rows, opencv, images_used, minutes) -> None:
    cpu = platform.processor() or platform.machine()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    lines = [
        "## Inference speed, 416x416",
        "",
        f"`python bench/bench_inference.py` on {os.cpu_count()} CPU cores ({simd}, {cpu}), one "
        f"run of {minutes:.0f} minutes; ms per image, the lowest of {args.rounds} medians taken in "
        f"turn over the runtimes, after warm-up ({args.repeats} timed runs of the network, "
        f"rounds of 16 images end to end). Images: {images_used}. "
        "Random weights, 80 classes, each image giving 169 boxes to suppress and about ten to "
        "draw "
        f"(confidence {CONFIDENCE}, NMS IoU {NMS_IOU}). End to end: files to drawn images "
        "(attnyolo: `attnyolo predict`'s streaming loop; OpenCV: imread, blobFromImages, "
        "forward, NMSBoxesBatched, rectangle + putText). Ratios against OpenCV DNN on the same "
        "weights (no attention: Darknet files cannot hold it) at the same batch size.",
        "",
        "| attention | runtime | batch | network ms/img | x OpenCV | end to end ms/img | "
        "x OpenCV | end to end / network |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for attention, runtime, batch, net, e2e in rows:
        cv_net, cv_e2e = opencv[batch]
        e2e_cells = (
            f"{e2e:.1f} | {e2e / cv_e2e:.2f} | {e2e / net:.2f}" if e2e is not None else "- | - | -"
        )
        lines.append(
            f"| {attention} | {runtime} | {batch} | {net:.1f} | {net / cv_net:.2f} | {e2e_cells} |"
        )
    lines += ["", "Goals, as ratios in this run:", ""]
    keras = [r for r in rows if r[1] == "keras (BN folded)"]
    for batch, (cv_net, cv_e2e) in sorted(opencv.items()):
        k = next(r for r in keras if r[0] == "none" and r[2] == batch)
        o = next(r for r in rows if r[0] == "none" and r[1] == "onnxruntime" and r[2] == batch)
        lines.append(
            f"- batch {batch}: Keras/TensorFlow network only {k[3] / cv_net:.2f}x OpenCV "
            f"(goal <= {GOAL}: {'met' if k[3] / cv_net <= GOAL else 'missed'}); ONNX end to "
            f"end {o[4] / cv_e2e:.2f}x OpenCV end to end (goal <= 1.00: "
            f"{'met' if o[4] <= cv_e2e else 'missed'})"
        )
    for runtime in ("keras (BN folded)", "onnxruntime"):
        ratios = [r[4] / r[3] for r in rows if r[1] == runtime and r[4] is not None]
        worst = max(ratios)
        lines.append(
            f"- {runtime}: end to end / network only {min(ratios):.2f}-{worst:.2f} over every "
            f"type and batch (goal <= {GOAL}: {'met' if worst <= GOAL else 'missed'} "
            f"in the worst case)"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_section(args.output, lines[0], text)
    Path(args.json).write_text(
        json.dumps(
            {
                "rows": [dict(zip(FIELDS, r, strict=True)) for r in rows],
                "opencv": {str(b): {"network_ms": v[0], "e2e_ms": v[1]} for b, v in opencv.items()},
                "cpu": cpu,
                "simd": simd,
                "images": images_used,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
