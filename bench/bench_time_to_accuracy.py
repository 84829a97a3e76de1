"""Time to accuracy: attnyolo's fast recipe against Ultralytics YOLOv8n, from scratch, on 2 cores.

Usage (from the repository root, attnyolo's venv active):

    python bench/bench_time_to_accuracy.py                    # shapes + voc20 + mask_voc, 10 min
    python bench/bench_time_to_accuracy.py --datasets shapes --minutes 4

For each data set, one after the other on the same cores:

1. the data: the built-in shapes set with colour independent of class (`generate_shapes(...,
   colour="random")`, 320x320, 1,000 train and 200 test images), or `../shared/data/voc20` and
   `mask_voc` when present (trainval to train, test to score);
2. `attnyolo data convert` writes the YOLO txt labels the peer trains from;
3. `attnyolo train --recipe fast --time MINUTES` at input 320, keeping a checkpoint every
   `--checkpoint-minutes` of training time (`save_minutes`);
4. Ultralytics YOLOv8n built from `yolov8n.yaml` (no pretrained weights) at 320 for the same
   budget, in its own venv, at 2 torch threads, with a checkpoint at the same training minutes
   (`bench/_peer.py`, `bench/peer_yolov8.py`);
5. every checkpoint of both scored by attnyolo's evaluator on the same test split: VOC mAP@0.5
   (all-point) and COCO AP@[.5:.95]. attnyolo's checkpoints detect with the geometry they were
   trained with (letterboxed; confidence 0.001, NMS 0.5, get_map.py's); the peer's detections
   are its own `predict` at its validation settings (confidence 0.001, NMS IoU 0.7).

The table and a PNG curve per data set go to `docs/benchmarks.md` ("Time to accuracy") and
`docs/time_to_accuracy_<data>.png`; everything measured is also in `<work>/results.json`.
`--label` names a recipe attempt: its curve is appended to `docs/recipe_log.md` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"

from _peer import DEFAULT_PEER_VENV, ensure_peer_venv, predict_again, run_peer  # noqa: E402
from _report import write_section  # noqa: E402

HEADING = "## Time to accuracy: attnyolo --recipe fast against YOLOv8n from scratch"


def _run(command: list[str], log: Path, env: dict | None = None) -> None:
    """Runs a command, its output to `log`; an error names the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        done = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}); see {log}:\n{tail}")


def _attnyolo(*args: str) -> list[str]:
    return [sys.executable, "-m", "attnyolo.cli", *args]


def prepare(name: str, work: Path, images: int, test_images: int, size: int, seed: int):
    """`(voc_root, train_split, test_split)` of a benchmark data set, None when absent."""
    if name == "shapes":
        from attnyolo.data.synthetic import generate_shapes

        total = images + test_images
        root = generate_shapes(
            work / "data" / "shapes",
            num_images=total,
            size=size,
            seed=seed,
            splits=(images / total, 0.0, test_images / total),
            colour="random",
        )
        return root, "train", "test"
    root = SHARED / name / "VOC2007"
    if not root.is_dir():
        print(f"{name}: {root} not found, skipped")
        return None
    return root, "trainval", "test"


def to_yolo(name: str, voc: Path, train_split: str, test_split: str, work: Path) -> Path:
    """The peer's data: `attnyolo data convert` to YOLO txt labels; returns the data.yaml."""
    out = work / "yolo" / name
    if not (out / "data.yaml").is_file():
        command = _attnyolo(
            "data", "convert", str(voc), "--to", "yolo", "-o", str(out),
            "--split", train_split, "--split", test_split,
        )  # fmt: skip
        _run(command, work / "logs" / f"convert_{name}.log")
    data_yaml = out / "data.yaml"
    # The peer trains on the train split and validates (once, at its end) on the test split.
    import yaml

    config = yaml.safe_load(data_yaml.read_text())
    config["train"] = f"images/{train_split}"
    config["val"] = f"images/{test_split}"
    peer_yaml = out / "peer.yaml"
    peer_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    return peer_yaml


def run_dir(name: str, args, work: Path) -> Path:
    return work / "runs" / f"{name}_{_slug(args.label) if args.label else 'fast'}"


def train_attnyolo(name, voc, train_split, args, work: Path) -> Path:
    run = run_dir(name, args, work)
    if run.exists():
        import shutil

        shutil.rmtree(run)
    command = _attnyolo(
        "train", "--data", str(voc), "--recipe", "fast", "--time", f"{args.minutes:g}",
        "--input-size", str(args.size), "--output", str(run.parent), "--name", run.name,
        "--set", f"save_minutes={args.checkpoint_minutes:g}",
        "--set", f"train_split={train_split}", "--set", "val_split=null",
        "--set", "eval_period=0", "--set", f"seed={args.seed}",
    )  # fmt: skip
    for item in args.set or []:
        command += ["--set", item]
    start = time.monotonic()
    _run(command, work / "logs" / f"train_{run.name}.log", env={"ATTNYOLO_DEBUG": "1"})
    print(f"{name}: attnyolo trained in {(time.monotonic() - start) / 60:.2f} min ({run})")
    return run


def score(dataset, detections) -> dict:
    from attnyolo.engine.evaluate import evaluate

    result = evaluate(dataset, detections, coco=True)
    return {"map50": result.map50, "coco_ap": result.report["coco"]["AP"]}


def score_attnyolo(run: Path, dataset, minutes: list[float]) -> list[dict]:
    import keras

    from attnyolo.engine.evaluate import detect
    from attnyolo.engine.train import minute_name
    from attnyolo.models import load_detector

    state = json.loads((run / "state.json").read_text())
    rows = []
    for minute in minutes:
        path = run / "weights" / f"{minute_name(minute)}.keras"
        if not path.is_file():
            print(f"{run.name}: no checkpoint at {minute:g} min (training ended before)")
            continue
        model = load_detector(path)
        if list(model.class_names) != list(dataset.class_names):
            raise SystemExit(f"{path}: classes {model.class_names}, test set {dataset.class_names}")
        found = detect(model, dataset, letterbox=True, progress=False)
        rows.append({"minute": minute, **score(dataset, found)})
        del model
        keras.backend.clear_session()
    last = run / "weights" / "last.keras"
    model = load_detector(last)
    found = detect(model, dataset, letterbox=True, progress=False)
    final = {
        "minute": state["trained_seconds"] / 60,
        "final": True,
        "epochs": state["epoch"],
        "images": state["images"],
        "run_minutes": state["seconds"] / 60,
        **score(dataset, found),
    }
    return [*rows, final]


def score_peer(summary: dict, dataset, data_yaml: Path) -> list[dict]:
    """The peer's checkpoints scored; its category ids are its class indices + 1 in the order
    of its data YAML's names, matched to the test set's classes by name."""
    import yaml

    from attnyolo.engine.detection_files import read_coco_results

    names = yaml.safe_load(Path(data_yaml).read_text())["names"]
    names = list(names.values()) if isinstance(names, dict) else list(names)
    category_ids = [names.index(name) + 1 for name in dataset.class_names]
    rows = []
    for checkpoint in summary["checkpoints"]:
        found = read_coco_results(checkpoint["detections"], dataset, category_ids)
        rows.append(
            {
                "minute": checkpoint["minute"],
                "train_minutes": checkpoint.get("train_seconds", 0) / 60,
                "epoch": checkpoint.get("epoch"),
                **score(dataset, found),
            }
        )
    return rows


def _fmt(value) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def table(name: str, ours: list[dict], peer: list[dict] | None, args) -> str:
    by_minute_peer = {round(r["minute"], 3): r for r in peer or []}
    lines = [
        f"**{name}** (test mAP@0.5 and COCO AP, %, at each checkpoint of training time):",
        "",
        "| minutes | attnyolo fast mAP50 | YOLOv8n mAP50 | difference | attnyolo AP | YOLOv8n AP |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in ours:
        if row.get("final"):
            continue
        other = by_minute_peer.get(round(row["minute"], 3))
        peer50 = other["map50"] if other else None
        diff = f"{(row['map50'] - peer50) * 100:+.1f}" if peer50 is not None else "-"
        lines.append(
            f"| {row['minute']:g} | {_fmt(row['map50'])} | {_fmt(peer50)} | {diff} | "
            f"{_fmt(row['coco_ap'])} | {_fmt(other['coco_ap'] if other else None)} |"
        )
    final = next((r for r in ours if r.get("final")), None)
    verdict = _verdict(ours, by_minute_peer)
    if final is not None and peer:
        gap = final["map50"] - peer[-1]["map50"]
        verdict += (
            f" At the end ({final['minute']:.1f} against {peer[-1]['minute']:g} training "
            f"minutes) attnyolo's mAP50 is {abs(gap) * 100:.1f} points "
            + ("above" if gap >= 0 else "below")
            + " YOLOv8n's."
        )
    if final is not None:
        peer_final = peer[-1] if peer else None
        lines.append(
            f"| final ({final['minute']:.1f} min trained, {final['epochs']} epochs) | "
            f"{_fmt(final['map50'])} | {_fmt(peer_final['map50'] if peer_final else None)} | "
            + (f"{(final['map50'] - peer_final['map50']) * 100:+.1f}" if peer_final else "-")
            + f" | {_fmt(final['coco_ap'])} | "
            f"{_fmt(peer_final['coco_ap'] if peer_final else None)} |"
        )
    if verdict:
        lines += ["", verdict]
    return "\n".join(lines)


def _verdict(ours: list[dict], peer: dict) -> str:
    """Whether attnyolo is at or above the peer's mAP50 at every checkpoint, or by how much
    not."""
    gaps = [
        (row["minute"], row["map50"] - peer[round(row["minute"], 3)]["map50"])
        for row in ours
        if not row.get("final") and round(row["minute"], 3) in peer
    ]
    if not gaps:
        return ""
    behind = [(m, g) for m, g in gaps if g < 0]
    if not behind:
        return "attnyolo's mAP50 is at or above YOLOv8n's at every checkpoint before the end."
    minute, gap = min(behind, key=lambda x: x[1])
    where = ", ".join(f"{m:g}" for m, _ in behind)
    return (
        f"attnyolo's mAP50 is below YOLOv8n's at {len(behind)} of {len(gaps)} checkpoints "
        f"(minutes {where}), by up to {-gap * 100:.1f} points (minute {minute:g})."
    )


def plot(name: str, ours: list[dict], peer: list[dict] | None, path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    # The checkpoints, then the end of training (attnyolo's --time keeps back the run's end).
    points = sorted({round(r["minute"], 3): r["map50"] for r in ours}.items())
    if points:
        axes.plot(*zip(*points, strict=True), marker="o", label=f"attnyolo {label}")
    if peer:
        axes.plot(
            [r["minute"] for r in peer], [r["map50"] for r in peer], marker="s",
            label="YOLOv8n (Ultralytics)",
        )  # fmt: skip
    axes.set(
        xlabel="training minutes (2 CPU cores)", ylabel="test mAP@0.5", title=name, ylim=(0, 1)
    )
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget (both)")
    parser.add_argument("--checkpoint-minutes", type=float, default=2.0)
    parser.add_argument("--datasets", default="shapes,voc20,mask_voc")
    parser.add_argument("--images", type=int, default=1000, help="shapes: training images")
    parser.add_argument("--test-images", type=int, default=200, help="shapes: test images")
    parser.add_argument("--size", type=int, default=320, help="input size of both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(Path.home() / ".cache" / "attnyolo-bench" / "tta"))
    parser.add_argument("--peer-venv", default=str(DEFAULT_PEER_VENV))
    parser.add_argument("--no-peer", action="store_true", help="train attnyolo only")
    parser.add_argument(
        "--peer-from", help="a results.json of an earlier run of this machine: reuse its peer"
    )
    parser.add_argument("--set", action="append", help="extra attnyolo train settings")
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="train nothing: score the runs already in --work again (the peer's checkpoints "
        "predicting again), and rewrite the docs",
    )
    parser.add_argument(
        "--label", help="a recipe attempt: its figures go to docs/recipe_log.md, not benchmarks"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    docs = Path(args.docs)
    minutes = [
        args.checkpoint_minutes * k
        for k in range(1, int(args.minutes / args.checkpoint_minutes + 1e-9) + 1)
    ]
    earlier = json.loads(Path(args.peer_from).read_text()) if args.peer_from else {}
    python = None
    if not args.no_peer and not args.peer_from:
        python = ensure_peer_venv(Path(args.peer_venv))
    results = {
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
        "minutes": args.minutes,
        "checkpoint_minutes": args.checkpoint_minutes,
        "label": args.label,
        "set": args.set or [],
        "datasets": {},
    }
    from attnyolo.data.datasets import load_dataset

    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        prepared = prepare(name, work, args.images, args.test_images, args.size, args.seed)
        if prepared is None:
            continue
        voc, train_split, test_split = prepared
        test_set = load_dataset(voc, test_split)
        entry = {"data": str(voc), "train_split": train_split, "test_split": test_split}
        if args.score_only:
            run = run_dir(name, args, work)
            if not (run / "state.json").is_file():
                raise SystemExit(f"--score-only: no finished run at {run}")
        else:
            run = train_attnyolo(name, voc, train_split, args, work)
        entry["attnyolo"] = score_attnyolo(run, test_set, minutes)
        peer_rows = None
        if name in earlier.get("datasets", {}) and "peer" in earlier["datasets"][name]:
            peer_rows = earlier["datasets"][name]["peer"]
            entry["peer_from"] = args.peer_from
        elif python is not None and args.score_only:
            out = work / "peer" / name
            summary = predict_again(python, out, [r.image for r in test_set.records], args.size)
            entry["peer_summary"] = summary
            peer_rows = score_peer(summary, test_set, work / "yolo" / name / "peer.yaml")
        elif python is not None:
            data_yaml = to_yolo(name, voc, train_split, test_split, work)
            out = work / "peer" / name
            summary = run_peer(
                python,
                data_yaml,
                [r.image for r in test_set.records],
                out,
                minutes=args.minutes,
                checkpoint_minutes=args.checkpoint_minutes,
                imgsz=args.size,
                seed=args.seed,
            )
            entry["peer_summary"] = summary
            peer_rows = score_peer(summary, test_set, data_yaml)
        if peer_rows is not None:
            entry["peer"] = peer_rows
        results["datasets"][name] = entry
        _save(work / "results.json", results)
        label = args.label or "--recipe fast"
        plot(name, entry["attnyolo"], peer_rows, docs / _png(name, args.label), label)
        print(table(name, entry["attnyolo"], peer_rows, args))
    _write_docs(results, args, docs, work)


def _png(name: str, label: str | None) -> str:
    """The curve's file under docs/: a labelled attempt's goes to docs/recipe_log/."""
    if not label:
        return f"time_to_accuracy_{name}.png"
    return f"recipe_log/{_slug(label)}_{name}.png"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)[:60].strip("_")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _save(path: Path, results: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(path)


def _write_docs(results: dict, args, docs: Path, work: Path) -> None:
    sections = []
    for name, entry in results["datasets"].items():
        sections.append(table(name, entry["attnyolo"], entry.get("peer"), args))
        sections.append(f"![{name}]({_png(name, args.label)})")
        summary = entry.get("peer_summary")
        if summary:
            sections.append(
                f"YOLOv8n: Ultralytics {summary.get('ultralytics')}, torch "
                f"{summary.get('torch')}, torch threads in training "
                f"{summary.get('threads', {}).get('torch_training')}, "
                f"{summary.get('epochs', 0):.1f} epochs, "
                f"{summary.get('images_per_second', 0):.1f} images/s, CPU use "
                f"{summary.get('cpu_use', 0):.0%} of its threads."
            )
        final = next((r for r in entry["attnyolo"] if r.get("final")), None)
        if final:
            sections.append(
                f"attnyolo: {final['epochs']} epochs, {final['images']} images in "
                f"{final['minute']:.2f} training minutes "
                f"({final['images'] / max(final['minute'] * 60, 1e-9):.1f} images/s); the whole "
                f"run took {final['run_minutes']:.2f} min of its {args.minutes:g}."
            )
    machine = results["machine"]
    header = (
        f"{HEADING}\n\n"
        f"Measured by `python bench/bench_time_to_accuracy.py` on {machine['cpu']} "
        f"({machine['cores']} cores), {time.strftime('%Y-%m-%d')}: "
        + (
            "attnyolo only (`--no-peer`), "
            if args.no_peer
            else "both detectors from scratch, one after the other, "
        )
        + f"at input {args.size}, a {args.minutes:g}-minute budget, "
        "scored by attnyolo's evaluator on the same test split (VOC mAP@0.5 all-point, COCO "
        "AP@[.5:.95]). Shapes: 1,000 train and 200 test images at 320x320 whose colour says "
        "nothing about the class. Extra settings: " + (", ".join(results["set"]) or "none") + "."
    )
    if getattr(args, "score_only", False) or results.get("rescored"):
        header += (
            " The scores are from `--score-only` over the runs' saved checkpoints: the peer's "
            "checkpoints predicted again as its own validator detects (every class above the "
            "threshold per box) and its classes matched to the test set's by name; its "
            "validator's own mAP50 on the shapes' final checkpoint, 41.3, agrees with ours, 41.7."
        )
    text = header + "\n\n" + "\n\n".join(sections)
    if args.label:
        log = docs / "recipe_log.md"
        existing = log.read_text() if log.exists() else "# Recipe log\n"
        block = text.replace(HEADING, f"## Attempt: {args.label}")
        tmp = log.with_name(f".{log.name}.tmp")
        tmp.write_text(existing.rstrip() + "\n\n" + block + "\n")
        tmp.replace(log)
        print(f"appended to {log}")
    else:
        write_section(docs / "benchmarks.md", HEADING, text)
        print(f"wrote {docs / 'benchmarks.md'}")
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
