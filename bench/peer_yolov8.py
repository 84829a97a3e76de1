"""Train Ultralytics YOLOv8n from scratch for a wall-clock budget, with timed checkpoints.

Runs inside the peer venv that ``bench/_peer.py`` sets up (it imports Ultralytics and PyTorch,
never attnyolo); ``_peer.run_peer`` starts it with the environment it needs (``YOLO_CONFIG_DIR``,
``YOLO_OFFLINE=1``, ``OMP_NUM_THREADS``)::

    python bench/peer_yolov8.py --data DATA_YAML --test-list FILE --out DIR --minutes 10 \\
        [--checkpoint-minutes 2] [--imgsz 320] [--batch 16] [--seed 0] [--threads 2]

Ultralytics trains ``yolov8n.yaml`` with ``time=minutes/60`` (its own budget: it lays its schedule
over the budget and stops on time), no per-epoch validation and otherwise its defaults. Every
``checkpoint-minutes`` of training time a callback saves the EMA model to
``DIR/checkpoints/minute_02.pt``...; the time spent saving is taken off the clock (Ultralytics'
``train_time_start`` and ours are moved forward by it), and so is everything after the last
training batch (Ultralytics' closing validation). After training each checkpoint predicts the
test images with Ultralytics' validation settings into ``DIR/detections/minute_02.json`` (COCO
results, ``image_id`` the file stem, ``category_id`` the class index + 1, boxes in pixels of the
original image), and ``DIR/peer.json`` sums it all up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from copy import deepcopy
from datetime import datetime, timezone
from pathlib import Path

# Every network look-up and connection, and every child process, is recorded (and printed), so a
# run shows that nothing tried to download or pip-install. Installed before Ultralytics is imported.
_NETWORK = {
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyname_ex",
    "socket.connect",
    "urllib.Request",
    "http.client.connect",
}
_PROCESSES = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn"}
NETWORK_EVENTS: list[dict] = []
PROCESS_EVENTS: list[dict] = []


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect" and getattr(args[0], "family", None) == getattr(
        socket, "AF_UNIX", None
    ):
        return  # a local socket: the loader workers hand tensors over these, nothing leaves
    if event in _NETWORK or event in _PROCESSES:
        entry = {"event": event, "args": [repr(a)[:200] for a in args[:3]]}
        (NETWORK_EVENTS if event in _NETWORK else PROCESS_EVENTS).append(entry)
        print(f"peer: AUDIT {event} {entry['args']}", file=sys.stderr, flush=True)


sys.addaudithook(_audit)


def checkpoint_points(minutes: float, every: float) -> list[float]:
    """The training minutes to checkpoint at: each multiple of ``every`` up to ``minutes``, and
    ``minutes`` itself."""
    count = math.floor(minutes / every + 1e-9)
    points = [round(every * k, 6) for k in range(1, count + 1)]
    if not points or points[-1] < minutes - 1e-9:
        points.append(round(minutes, 6))
    return [int(m) if m == int(m) else m for m in points]


def point_name(minute: float) -> str:
    """``minute_02`` for 2, ``minute_01.5`` for 1.5."""
    if abs(minute - round(minute)) < 1e-9:
        return f"minute_{round(minute):02d}"
    whole = int(minute)
    return f"minute_{whole:02d}{f'{minute - whole:.6g}'[1:]}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="Ultralytics data YAML (absolute paths)")
    p.add_argument("--test-list", required=True, help="file with one test image path per line")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--minutes", type=float, required=True, help="training budget in minutes")
    p.add_argument("--checkpoint-minutes", type=float, default=2.0)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="loader worker processes (Ultralytics forces 0 on the CPU; this puts them back)",
    )
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="Ultralytics' deterministic=True (deterministic kernels: slower); off by default",
    )
    p.add_argument(
        "--predict-only",
        action="store_true",
        help="no training: predict again with the checkpoints and peer.json of an earlier run",
    )
    return p.parse_args(argv)


def _set_threads(threads: int) -> None:
    """Make Ultralytics train and predict on ``threads`` threads.

    ``select_device`` calls ``torch.set_num_threads(NUM_THREADS)`` with Ultralytics' own
    ``NUM_THREADS = min(8, cpu_count - 1)``, one thread on two cores, whatever
    ``OMP_NUM_THREADS`` says; ``torch_utils`` holds its own copy of the constant.
    """
    import torch
    import ultralytics.utils
    import ultralytics.utils.torch_utils

    ultralytics.utils.NUM_THREADS = threads
    ultralytics.utils.torch_utils.NUM_THREADS = threads
    torch.set_num_threads(threads)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class Checkpointer:
    """Ultralytics callbacks that save the EMA model every ``every`` minutes of training."""

    def __init__(self, points: list[float], folder: Path, workers: int | None = None):
        self.workers = workers
        self.points = points
        self.folder = folder
        self.saved: list[dict] = []
        self.epoch_batches = 0
        self.images_seen = 0
        self.threads_seen: set[int] = set()
        self.save_seconds = 0.0
        self.train_end: dict | None = None  # training time, epoch and images at the last batch
        self.epochs_log: list[dict] = []
        self.mosaic_closed: dict | None = None
        self.cpu_start = 0.0
        self.stopped_by = "ultralytics"  # its time check or its planned epochs

    # Clock: Ultralytics' own train_time_start, moved forward by our saves.
    @staticmethod
    def elapsed(trainer) -> float:
        return time.time() - trainer.train_time_start

    def on_pretrain_routine_start(self, trainer) -> None:
        # Ultralytics sets workers=0 for the CPU in its trainer's constructor ("time dominated by
        # inference"); with 2 cores a loader process beside the 2 torch threads is faster here
        # (bench/README.md). The data loaders are built after this event.
        if self.workers is not None:
            trainer.args.workers = self.workers

    def on_train_start(self, trainer) -> None:
        import torch

        self.cpu_start = time.process_time()
        self.threads_seen.add(torch.get_num_threads())
        close = getattr(trainer, "_close_dataloader_mosaic", None)
        if close is not None:

            def close_mosaic():
                self.mosaic_closed = {
                    "epoch": trainer.epoch + 1,
                    "train_seconds": round(self.elapsed(trainer), 2),
                }
                close()

            trainer._close_dataloader_mosaic = close_mosaic

    def on_train_epoch_start(self, trainer) -> None:
        self.epoch_batches = 0

    def _batch_images(self, trainer) -> int:
        loader = trainer.train_loader
        size, count = loader.batch_size, len(loader.dataset)
        return max(0, min(size, count - self.epoch_batches * size))

    def on_train_batch_start(self, trainer) -> None:
        # Counted when started: Ultralytics' timed stop breaks out after the batch has trained but
        # before on_train_batch_end.
        self.images_seen += self._batch_images(trainer)
        self.epoch_batches += 1

    def on_train_batch_end(self, trainer) -> None:
        import torch

        self.threads_seen.add(torch.get_num_threads())
        elapsed = self.elapsed(trainer)
        self.train_end = self._position(trainer, elapsed)
        while len(self.saved) < len(self.points) and elapsed >= self.points[len(self.saved)] * 60:
            self._save(trainer, self.points[len(self.saved)], self.train_end)
        if len(self.saved) == len(self.points) and not trainer.stop:
            # The budget is spent. Ultralytics checks its own budget only at optimizer steps
            # (every `accumulate` batches) and would train up to that many batches more; its
            # loop honours this flag after every batch.
            trainer.stop = True
            self.stopped_by = "budget checkpoint"

    def on_train_epoch_end(self, trainer) -> None:
        # Right after the epoch's last batch, before any validation: the end of training so far.
        self.train_end = self._position(trainer, self.elapsed(trainer))
        self.epochs_log.append(
            {
                "epoch": trainer.epoch + 1,
                "train_seconds": self.train_end["train_seconds"],
                "images_seen": self.images_seen,
                "epochs_planned": trainer.epochs,
            }
        )

    def on_train_end(self, trainer) -> None:
        # Ultralytics stopped before the budget ran out: its final EMA (unchanged since the last
        # batch; the validation after it does not train) stands for every point not reached.
        while self.train_end is not None and len(self.saved) < len(self.points):
            self._save(trainer, self.points[len(self.saved)], self.train_end)

    def _position(self, trainer, elapsed: float) -> dict:
        batches = max(len(trainer.train_loader), 1)
        return {
            "train_seconds": round(elapsed, 3),
            "cpu_seconds": round(time.process_time() - self.cpu_start, 2),
            "epoch": round(trainer.epoch + self.epoch_batches / batches, 4),
            "images_seen": self.images_seen,
        }

    def _save(self, trainer, minute: float, position: dict) -> None:
        import torch
        import ultralytics

        start = time.time()
        ema = deepcopy(trainer.ema.ema).half()
        if hasattr(ema, "criterion"):
            ema.criterion = None  # training-only state, as Ultralytics' save_model strips it
        for value in ema.state_dict().values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                torch.nan_to_num_(value)  # fp16 overflow, as in save_model
        path = self.folder / f"{point_name(minute)}.pt"
        tmp = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "epoch": trainer.epoch,
                "model": ema,  # YOLO(path) loads ckpt["ema"] or ckpt["model"]
                "updates": trainer.ema.updates,
                "train_args": vars(trainer.args),
                "date": datetime.now(timezone.utc).isoformat(),
                "version": ultralytics.__version__,
            },
            tmp,
        )
        os.replace(tmp, path)
        spent = time.time() - start
        # Saving is not training: move both clocks (Ultralytics' time budget reads this one).
        trainer.train_time_start += spent
        trainer.epoch_time_start += spent
        self.save_seconds += spent
        self.saved.append(
            {"minute": minute, **position, "weights": str(path), "save_seconds": round(spent, 3)}
        )
        print(
            f"peer: checkpoint {path.name} at {position['train_seconds']:.1f} s training, "
            f"epoch {position['epoch']:.2f}, {position['images_seen']} images",
            flush=True,
        )


def predict(weights: Path, images: list[str], out: Path, imgsz: int, settings: dict) -> dict:
    """Detections of ``weights`` on ``images`` as a COCO results list written to ``out``.

    As Ultralytics' own validator detects (`DetectionValidator.postprocess`): its NMS with
    `multi_label=True`, so a box keeps every class above the confidence threshold. `predict`
    alone keeps one class per box, which scores a detector whose classes are still uncertain far
    below what its validator reports (on the shapes at 10 minutes: mAP50 0.11 against 0.41)."""
    import functools

    from ultralytics import YOLO
    from ultralytics.utils import nms

    model = YOLO(str(weights))
    start = time.time()
    results = []
    options = {"imgsz": imgsz, "device": "cpu", "stream": True, "verbose": False, **settings}
    single_label = nms.non_max_suppression
    nms.non_max_suppression = functools.partial(single_label, multi_label=True)
    try:
        found = list(model.predict(source=images, **options)) if images else []
    finally:
        nms.non_max_suppression = single_label
    for result in found:
        boxes = result.boxes
        xyxy = boxes.xyxy.cpu().numpy().tolist()
        scores = boxes.conf.cpu().numpy().tolist()
        classes = boxes.cls.cpu().numpy().astype(int).tolist()
        stem = Path(result.path).stem
        for (x1, y1, x2, y2), score, cls in zip(xyxy, scores, classes, strict=True):
            results.append(
                {
                    "image_id": stem,
                    "category_id": cls + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(float(score), 5),
                }
            )
    seconds = time.time() - start
    _write_json(out, results)
    return {"detections_count": len(results), "predict_seconds": round(seconds, 2)}


def validate(weights: Path, args, out: Path) -> dict:
    """Ultralytics' own validator on ``weights`` over the data YAML's ``val`` split (the test
    split): a check on how the benchmark scores the peer's detections (its mAP50 interpolates
    over 101 recall points, attnyolo's evaluator VOC's all points, so they differ a little)."""
    from ultralytics import YOLO

    start = time.time()
    metrics = YOLO(str(weights)).val(
        data=str(Path(args.data).resolve()),
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        plots=False,
        verbose=False,
        project=str(out),
        name="val",
        exist_ok=True,
    )
    result = {
        "checkpoint": weights.stem,
        "map50": round(float(metrics.box.map50), 5),
        "map50_95": round(float(metrics.box.map), 5),
        "seconds": round(time.time() - start, 2),
    }
    print(f"peer: its validator on {weights.stem}: mAP50 {result['map50']:.4f}", flush=True)
    return result


def _prediction_settings() -> dict:
    """Ultralytics' validation settings (cfg/default.yaml: iou, max_det; its validator sets
    conf 0.001)."""
    from ultralytics.cfg import get_cfg

    cfg = get_cfg()
    return {"conf": 0.001, "iou": cfg.iou, "max_det": cfg.max_det, "multi_label": True}


def _predict_again(out: Path, images: list[str], args) -> int:
    """Detections of an earlier run's checkpoints again, into its peer.json."""
    summary = json.loads((out / "peer.json").read_text())
    settings = _prediction_settings()
    for entry in summary["checkpoints"]:
        weights = Path(entry["weights"])
        detections = out / "detections" / f"{weights.stem}.json"
        options = {k: v for k, v in settings.items() if k != "multi_label"}
        entry.update(predict(weights, images, detections, args.imgsz, options))
        entry["detections"] = str(detections)
        print(f"peer: {weights.stem}: {entry['detections_count']} detections again", flush=True)
    summary["predict"] = {**summary.get("predict", {}), **settings, "again": True}
    if Path(args.data).is_file() and summary["checkpoints"]:
        summary["validator"] = validate(Path(summary["checkpoints"][-1]["weights"]), args, out)
    _write_json(out / "peer.json", summary)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    wall_start = time.time()
    out = Path(args.out).resolve()
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "detections").mkdir(parents=True, exist_ok=True)
    images = [line.strip() for line in Path(args.test_list).read_text().splitlines()]
    images = [line for line in images if line]

    import torch
    import torchvision
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.utils import ONLINE, SETTINGS, USER_CONFIG_DIR

    # No telemetry, no integrations; YOLO_OFFLINE=1 already makes Ultralytics think it is offline.
    off = (
        "sync",
        "clearml",
        "comet",
        "dvc",
        "mlflow",
        "neptune",
        "raytune",
        "tensorboard",
        "wandb",
    )
    SETTINGS.update({key: False for key in off if key in SETTINGS})
    _set_threads(args.threads)
    print(
        f"peer: ultralytics {ultralytics.__version__}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, {torch.get_num_threads()} threads, "
        f"online={ONLINE}, config {USER_CONFIG_DIR}",
        flush=True,
    )

    if args.predict_only:
        return _predict_again(out, images, args)
    points = checkpoint_points(args.minutes, args.checkpoint_minutes)
    checkpointer = Checkpointer(points, out / "checkpoints", workers=args.workers)
    model = YOLO("yolov8n.yaml")
    for event in (
        "on_pretrain_routine_start",
        "on_train_start",
        "on_train_epoch_start",
        "on_train_batch_start",
        "on_train_batch_end",
        "on_train_epoch_end",
        "on_train_end",
    ):
        model.add_callback(event, getattr(checkpointer, event))

    train_start = time.time()
    model.train(
        data=str(Path(args.data).resolve()),
        pretrained=False,
        epochs=100,  # Ultralytics' default; with `time` it re-plans the epochs after each one
        time=args.minutes / 60,
        imgsz=args.imgsz,
        batch=args.batch,
        seed=args.seed,
        deterministic=args.deterministic,
        device="cpu",
        val=False,
        plots=False,
        project=str(out),
        name="train",
        exist_ok=True,
    )
    train_wall = time.time() - train_start
    trainer = model.trainer
    if not checkpointer.saved:
        raise RuntimeError("training ended without a checkpoint")

    settings = _prediction_settings()
    predict_settings = {k: v for k, v in settings.items() if k != "multi_label"}
    for entry in checkpointer.saved:
        name = Path(entry["weights"]).stem
        detections = out / "detections" / f"{name}.json"
        weights = Path(entry["weights"])
        entry.update(predict(weights, images, detections, args.imgsz, predict_settings))
        entry["detections"] = str(detections)
        print(
            f"peer: {name}: {entry['detections_count']} detections on {len(images)} images "
            f"in {entry['predict_seconds']} s",
            flush=True,
        )
    threads_predict = torch.get_num_threads()
    validator = validate(Path(checkpointer.saved[-1]["weights"]), args, out)
    from ultralytics.utils.torch_utils import get_flops

    # Ultralytics' own count (2 x multiply-adds, thop) of the trained network at the training
    # size; 0.0 where thop is missing.
    gflops = get_flops(deepcopy(trainer.model).float(), args.imgsz)

    optimizer = trainer.optimizer
    group = optimizer.param_groups[0]
    end = checkpointer.train_end or {}
    train_seconds = end.get("train_seconds", 0.0)
    summary = {
        "model": "yolov8n.yaml (from scratch)",
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": sys.version.split()[0],
        "threads": {
            "requested": args.threads,
            "torch_training": sorted(checkpointer.threads_seen),
            "torch_predict": threads_predict,
            "interop": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "workers": trainer.train_loader.num_workers,
        "gflops": round(gflops, 4) or None,
        "budget_minutes": args.minutes,
        "checkpoint_minutes": args.checkpoint_minutes,
        "train_minutes": round(train_seconds / 60, 4),
        "train_seconds": train_seconds,
        "budget_ratio": round(train_seconds / (args.minutes * 60), 4),
        "stopped_by": checkpointer.stopped_by,
        "save_seconds": round(checkpointer.save_seconds, 3),
        "train_call_seconds": round(train_wall, 2),
        "wall_seconds": None,
        "epochs": end.get("epoch"),
        "epochs_completed": len(checkpointer.epochs_log),
        "epochs_planned": trainer.epochs,
        "epoch_log": checkpointer.epochs_log,
        "images_seen": end.get("images_seen"),
        "images_per_second": round(end.get("images_seen", 0) / train_seconds, 2)
        if train_seconds
        else None,
        # CPU time of this process over training, per second and thread: well under 1 means the
        # cores were shared with other work (or the threads were not busy).
        "cpu_use": round(end.get("cpu_seconds", 0) / train_seconds / args.threads, 3)
        if train_seconds
        else None,
        "train_images": len(trainer.train_loader.dataset),
        "checkpoints": checkpointer.saved,
        "settings": {
            "optimizer_arg": trainer.args.optimizer,
            "optimizer": type(optimizer).__name__,
            "lr0": group.get("initial_lr"),
            "momentum": group.get("momentum", group.get("betas", [None])[0]),
            "weight_decay_arg": trainer.args.weight_decay,
            "batch": trainer.batch_size,
            "nbs": trainer.args.nbs,
            # Batches per optimizer step once warm-up has ramped it up (trainer.accumulate is
            # the current value).
            "accumulate": max(round(trainer.args.nbs / trainer.batch_size), 1),
            "imgsz": trainer.args.imgsz,
            "mosaic": trainer.args.mosaic,
            "close_mosaic": trainer.args.close_mosaic,
            "mosaic_closed": checkpointer.mosaic_closed,
            "warmup_epochs": trainer.args.warmup_epochs,
            "amp": bool(trainer.amp),
            "deterministic": trainer.args.deterministic,
            "seed": trainer.args.seed,
            "time_hours": trainer.args.time,
            "val": trainer.args.val,
        },
        "predict": {"imgsz": args.imgsz, **settings, "test_images": len(images)},
        "validator": validator,
        "network_events": NETWORK_EVENTS,
        "processes_started": PROCESS_EVENTS,
    }
    summary["wall_seconds"] = round(time.time() - wall_start, 2)
    _write_json(out / "peer.json", summary)
    print(f"peer: summary in {out / 'peer.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
