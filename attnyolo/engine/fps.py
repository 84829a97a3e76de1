"""`attnyolo fps`: how fast a model detects, network only and end to end, measured.

Network only: the runtime's forward pass on a ready batch. End to end: image files to drawn
results as `attnyolo predict` runs them (the streaming loop reads and resizes the next images in
threads while the network runs; decode, NMS and drawing follow), timed over rounds of images.
Stages: one batch at a time, each step timed alone: read (decode the file), preprocess (resize,
scale), network, decode + NMS, draw; their sum is the cost without overlap. Every figure is the
median of timed repetitions after warm-up, with its spread (10th and 90th percentiles); per
image = per batch / batch size. The original scripts' fps mode times one image's
preprocess + network + decode + NMS a hundred times; the end-to-end figures add reading and
drawing.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

STAGES = ("read", "preprocess", "network", "decode_nms", "draw")


@dataclass
class Timing:
    """Milliseconds per batch of one measured job: median and spread over the repetitions."""

    name: str
    batch_size: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    @property
    def ms_per_image(self) -> float:
        return self.median_ms / self.batch_size

    @property
    def images_per_second(self) -> float:
        return 1e3 * self.batch_size / self.median_ms

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "ms_per_image": round(self.ms_per_image, 3),
            "images_per_second": round(self.images_per_second, 2),
        }


def _timing(name: str, batch_size: int, samples: Sequence[float]) -> Timing:
    ms = np.asarray(samples, np.float64) * 1e3
    return Timing(
        name,
        batch_size,
        float(np.median(ms)),
        float(np.percentile(ms, 10)),
        float(np.percentile(ms, 90)),
        len(ms),
    )


def time_calls(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds of each of `repeats` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def synthetic_image_file(folder: str | os.PathLike, size: tuple[int, int] = (480, 640)) -> Path:
    """A deterministic 640x480 JPEG (smooth colours and edges, so it compresses like a photo),
    for a measurement without a user's image."""
    import cv2

    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 255 / width), (y * 255 / height), ((x + y) % 64) * 4], axis=-1).astype(
        np.uint8
    )
    path = Path(folder) / "fps_synthetic.jpg"
    cv2.imwrite(str(path), image)
    return path


def measure_fps(
    predictor,
    images: Sequence[str | os.PathLike] = (),
    batch_size: int = 1,
    repeats: int = 30,
    warmup: int = 5,
    end_to_end: bool = True,
    stages: bool = True,
) -> dict:
    """Measures a `attnyolo.engine.predict.Predictor`.

    Args:
        predictor: the model and its detection settings (any model format).
        images: image files for the end-to-end figures (cycled to fill the batches); none: a
            synthetic 640x480 JPEG.
        batch_size: images per forward pass.
        repeats, warmup: timed and untimed repetitions of each job.
        end_to_end: also time the whole path from file to drawn image.
        stages: with `end_to_end`, also each stage alone, one batch at a time.

    Returns:
        A JSON-ready dict: settings, `network` and (with `end_to_end`) `end_to_end` and each
        stage's timing, and the ratio end to end / network only.
    """
    from attnyolo.data.images import load_image
    from attnyolo.inference.stream import file_items
    from attnyolo.inference.visualize import draw_on_array

    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError("batch_size and repeats must be >= 1, warmup >= 0")
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(p) for p in images] or [synthetic_image_file(tmp)]
        batch_files = [files[i % len(files)] for i in range(batch_size)]
        loaded = [load_image(p) for p in batch_files]  # a bad file fails here, named
        prepared = [predictor.preprocessor(image) for image in loaded]
        batch = np.stack([p[0] for p in prepared])
        runtime, decoder = predictor.runtime, predictor.decoder
        network = _timing(
            "network", batch_size, time_calls(lambda: runtime(batch), repeats, warmup)
        )
        report = {
            "runtime": runtime.name,
            "settings": predictor.settings(),
            "batch_size": batch_size,
            "images": [str(p) for p in files] if images else ["synthetic 640x480 JPEG"],
            "repeats": repeats,
            "warmup": warmup,
            "network": network.to_dict(),
        }
        if not end_to_end:
            return report
        names = predictor.class_names
        by_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
        for round_index in range(warmup + repeats if stages else 0):
            clock = [time.perf_counter()]
            read = [load_image(p) for p in batch_files]
            clock.append(time.perf_counter())
            ready = [predictor.preprocessor(image) for image in read]
            inputs = np.stack([r[0] for r in ready])
            clock.append(time.perf_counter())
            heads = runtime(inputs)
            clock.append(time.perf_counter())
            found = decoder(heads, [im.shape[:2] for im in read], np.stack([r[1] for r in ready]))
            clock.append(time.perf_counter())
            for image, dets in zip(read, found, strict=True):
                draw_on_array(image, dets, names)
            clock.append(time.perf_counter())
            if round_index >= warmup:
                for stage, start, stop in zip(STAGES, clock[:-1], clock[1:], strict=True):
                    by_stage[stage].append(stop - start)
        # End to end as `attnyolo predict` runs: the streaming loop reads and resizes the next
        # images in threads while the network runs, then each result is drawn.
        per_round = max(16, 2 * batch_size)
        rounds = max(3, repeats // 5)
        stream_files = [files[i % len(files)] for i in range(per_round)]
        streamed = []
        for round_index in range(1 + rounds):  # the first round warms the loop up
            start = time.perf_counter()
            for result in predictor.stream(file_items(stream_files), batch_size=batch_size):
                draw_on_array(result.image, result.detections, names)
            if round_index:
                streamed.append((time.perf_counter() - start) / per_round * batch_size)
    total = _timing("end_to_end", batch_size, streamed)
    report["end_to_end"] = {**total.to_dict(), "images_per_round": per_round}
    if stages:
        report["stages"] = {s: _timing(s, batch_size, v).to_dict() for s, v in by_stage.items()}
        sequential = sum(report["stages"][s]["median_ms"] for s in STAGES)
        report["sequential_ms_per_image"] = round(sequential / batch_size, 3)
    report["end_to_end_over_network"] = round(total.median_ms / network.median_ms, 3)
    return report


def format_fps(report: dict) -> str:
    """The report as plain lines."""
    lines = [
        f"runtime {report['runtime']}, batch {report['batch_size']}, "
        f"{report['repeats']} timed runs after {report['warmup']} warm-up "
        "(median, 10th-90th percentile)"
    ]

    def line(name: str, t: dict) -> str:
        return (
            f"{name:<12} {t['ms_per_image']:8.2f} ms/image  {t['images_per_second']:7.1f} img/s"
            f"  ({t['p10_ms'] / t['batch_size']:.2f}-{t['p90_ms'] / t['batch_size']:.2f} ms)"
        )

    lines.append(line("network", report["network"]))
    if "end_to_end" in report:
        lines.append(line("end to end", report["end_to_end"]))
    if "stages" in report:
        lines.append(
            f"  one batch at a time, stage by stage: {report['sequential_ms_per_image']:.2f} "
            "ms/image"
        )
        for stage, t in report["stages"].items():
            lines.append("    " + line(stage, t))
    if "end_to_end" in report:
        lines.append(f"end to end / network: {report['end_to_end_over_network']:.2f}")
    return "\n".join(lines)
