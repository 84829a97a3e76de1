"""Time to accuracy: attnyolo's fast recipe against Ultralytics YOLOv8n, from scratch, on 2 cores.

Usage (from the repository root, attnyolo's venv active):

    python bench/bench_time_to_accuracy.py                    # shapes + voc20 + mask_voc, 10 min
    python bench/bench_time_to_accuracy.py --datasets shapes --minutes 4 --seeds 0 1 2

For each data set, one after the other on the same cores, and for each training seed of
`--seeds` (default 0 and 1; the data are the same for every seed, `--data-seed`) attnyolo, then
the peer, one run at a time:

1. the data: the built-in shapes set with colour independent of class (`generate_shapes(...,
   colour="random")`, 320x320, 1,000 train and 200 test images), or `../shared/data/voc20` and
   `mask_voc` when present (trainval to train, test to score);
2. `attnyolo data convert` writes the YOLO txt labels the peer trains from;
3. `attnyolo train --recipe fast --time MINUTES` at input 320, keeping a checkpoint every
   `--checkpoint-minutes` of training time (`save_minutes`);
4. Ultralytics YOLOv8n built from `yolov8n.yaml` (no pretrained weights) at 320 for the same
   budget, in its own venv, at 2 torch threads, with a checkpoint at the same training minutes
   (`bench/_peer.py`, `bench/peer_yolov8.py`), its seed the same;
5. every checkpoint of both scored by attnyolo's evaluator on the same test split: VOC mAP@0.5
   (all-point) and COCO AP@[.5:.95]. attnyolo's checkpoints detect with the geometry they were
   trained with (letterboxed; confidence 0.001, NMS 0.5, get_map.py's); the peer's detections
   are its own `predict` at its validation settings (confidence 0.001, NMS IoU 0.7).

The table (each detector's mean over the seeds, and each seed's value) and a PNG curve per data
set (the mean, each seed thin) go to `docs/benchmarks.md` ("Time to accuracy") and
`docs/time_to_accuracy_<data>.png`; everything measured is also in `<work>/results.json`, each
detector's rows by seed (`datasets.<data>.attnyolo["0"]`, `.peer["0"]`, `.peer_summary["0"]`).
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
from _report import cpu_name, write_section  # noqa: E402

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
    """`(voc_root, train_split, test_split)` of a benchmark data set, None when absent; `seed`
    is the shapes' data seed (the same for every training seed)."""
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


def run_dir(name: str, args, work: Path, seed: int) -> Path:
    return work / "runs" / f"{name}_{_slug(args.label) if args.label else 'fast'}_seed{seed}"


def peer_dir(name: str, work: Path, seed: int) -> Path:
    return work / "peer" / name / f"seed{seed}"


def train_attnyolo(name, voc, train_split, args, work: Path, seed: int) -> Path:
    run = run_dir(name, args, work, seed)
    if run.exists():
        import shutil

        shutil.rmtree(run)
    command = _attnyolo(
        "train", "--data", str(voc), "--recipe", "fast", "--time", f"{args.minutes:g}",
        "--input-size", str(args.size), "--output", str(run.parent), "--name", run.name,
        "--set", f"save_minutes={args.checkpoint_minutes:g}",
        "--set", f"train_split={train_split}", "--set", "val_split=null",
        "--set", "eval_period=0", "--set", f"seed={seed}",
    )  # fmt: skip
    for item in args.set or []:
        command += ["--set", item]
    start = time.monotonic()
    _run(command, work / "logs" / f"train_{run.name}.log", env={"ATTNYOLO_DEBUG": "1"})
    print(
        f"{name}: attnyolo seed {seed} trained in {(time.monotonic() - start) / 60:.2f} min ({run})"
    )
    return run


def score(dataset, detections) -> dict:
    from attnyolo.engine.evaluate import evaluate

    result = evaluate(dataset, detections, coco=True)
    return {"map50": result.map50, "coco_ap": result.report["coco"]["AP"]}


def score_attnyolo(run: Path, dataset, minutes: list[float]) -> list[dict]:
    import keras

    from attnyolo.engine.evaluate import detect
    from attnyolo.engine.train import minute_name
    from attnyolo.models.flops import count_flops
    from attnyolo.models.saving import load_detector

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
        # Forward FLOPs (2 x multiply-adds) of one image at the model's input size.
        "gflops": count_flops(model) / 1e9,
        "config": _run_config(run),
    }
    del model
    keras.backend.clear_session()
    return [*rows, final]


def _run_config(run: Path) -> dict:
    """The run's `mixed_precision` and `jit_compile` as its config.yaml has them (those present)."""
    import yaml

    path = run / "config.yaml"
    config = yaml.safe_load(path.read_text()) if path.is_file() else None
    config = config if isinstance(config, dict) else {}
    return {key: config[key] for key in ("mixed_precision", "jit_compile") if key in config}


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


def _by_seed(value) -> dict[str, list]:
    """A detector's rows (or peer summaries) by seed, `{"0": ...}`, as results.json keeps them;
    a bare list (one run) or a summary of results.json's earlier layout is taken as seed 0."""
    if not value:
        return {}
    if isinstance(value, dict) and all(str(k).lstrip("-").isdigit() for k in value):
        return {str(k): v for k, v in value.items()}
    return {"0": value}


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _key(row: dict):
    return "final" if row.get("final") else round(row["minute"], 3)


def _points(runs: dict[str, list], key=_key) -> dict:
    """`{checkpoint: {seed: row}}` over every seed's rows; the checkpoint is its minute, rounded,
    or "final"."""
    points: dict = {}
    for seed, rows in runs.items():
        for row in rows or []:
            points.setdefault(key(row), {})[seed] = row
    return points


def _cell(by_seed: dict, seeds: list[str], field: str = "map50", each: bool = True) -> str:
    """`mean (seed, seed, ...)` in %, a lone seed's value alone; "-" for none."""
    values = [by_seed[s][field] if s in by_seed else None for s in seeds]
    mean = _mean(values)
    if mean is None:
        return "-"
    if not each or len(seeds) == 1:
        return _fmt(mean)
    return f"{_fmt(mean)} ({', '.join(_fmt(v) for v in values)})"


def table(name: str, ours, peer, args) -> str:
    """The data set's table: at each checkpoint and the end, each detector's mean mAP50 over the
    seeds with each seed's value, the difference of the means and the COCO AP means. `ours` and
    `peer` are rows by seed (`{"0": rows, ...}`; a bare list is one seed's)."""
    ours, peer = _by_seed(ours), _by_seed(peer)
    our_seeds, peer_seeds = list(ours), list(peer)
    mine, theirs = _points(ours), _points(peer)
    n_ours = f" ({len(our_seeds)} seed{'s' if len(our_seeds) != 1 else ''})" if ours else ""
    n_peer = f" ({len(peer_seeds)} seed{'s' if len(peer_seeds) != 1 else ''})" if peer else ""
    lines = [
        f"**{name}** (test mAP@0.5 and COCO AP, %, at each checkpoint of training time; mAP50 "
        f"as the mean over the training seeds ({', '.join(our_seeds) or '-'}) with each seed's "
        "value in brackets, AP the mean):",
        "",
        f"| minutes | attnyolo fast mAP50{n_ours} | YOLOv8n mAP50{n_peer} | "
        "difference of means | attnyolo AP | YOLOv8n AP |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    checkpoints = sorted(k for k in mine if k != "final")
    for minute in checkpoints:
        lines.append(_table_row(f"{minute:g}", mine[minute], theirs.get(minute, {}), ours, peer))
    final = mine.get("final", {})
    # The peer's last checkpoint, seed by seed, is its end of training.
    peer_final = {s: rows[-1] for s, rows in peer.items() if rows}
    if final:
        trained = _mean(r["minute"] for r in final.values())
        epochs = [str(r["epochs"]) for r in final.values()]  # in seed order
        epochs = epochs[0] if len(set(epochs)) == 1 else "/".join(epochs)
        lines.append(
            _table_row(
                f"final ({trained:.1f} min trained, mean; {epochs} epochs)",
                final,
                peer_final,
                ours,
                peer,
            )
        )
    verdict = _verdict(mine, theirs, checkpoints)
    if final and peer_final:
        gap = _mean(r["map50"] for r in final.values()) - _mean(
            r["map50"] for r in peer_final.values()
        )
        verdict += (
            f" At the end ({_mean(r['minute'] for r in final.values()):.1f} against "
            f"{_mean(r['minute'] for r in peer_final.values()):g} training minutes, means) "
            f"attnyolo's mean mAP50 is {abs(gap) * 100:.1f} points "
            + ("above" if gap >= 0 else "below")
            + " YOLOv8n's."
        )
    if verdict.strip():
        lines += ["", verdict.strip()]
    return "\n".join(lines)


def _table_row(label: str, mine: dict, theirs: dict, ours: dict, peer: dict) -> str:
    our_seeds, peer_seeds = list(ours), list(peer)
    ours50 = _mean(r["map50"] for r in mine.values())
    peer50 = _mean(r["map50"] for r in theirs.values())
    diff = f"{(ours50 - peer50) * 100:+.1f}" if ours50 is not None and peer50 is not None else "-"
    return (
        f"| {label} | {_cell(mine, our_seeds)} | {_cell(theirs, peer_seeds) if peer else '-'} | "
        f"{diff} | {_cell(mine, our_seeds, 'coco_ap', each=False)} | "
        f"{_cell(theirs, peer_seeds, 'coco_ap', each=False) if peer else '-'} |"
    )


def _verdict(mine: dict, theirs: dict, checkpoints: list) -> str:
    """Whether attnyolo's mean mAP50 is at or above the peer's at every checkpoint, or by how
    much not; and at how many its lowest seed is at or above the peer's highest."""
    compared = [m for m in checkpoints if mine.get(m) and theirs.get(m)]
    if not compared:
        return ""
    gaps = [
        (
            m,
            _mean(r["map50"] for r in mine[m].values())
            - _mean(r["map50"] for r in theirs[m].values()),
        )
        for m in compared
    ]
    behind = [(m, g) for m, g in gaps if g < 0]
    if not behind:
        text = "attnyolo's mean mAP50 is at or above YOLOv8n's at every checkpoint before the end."
    else:
        minute, gap = min(behind, key=lambda x: x[1])
        where = ", ".join(f"{m:g}" for m, _ in behind)
        text = (
            f"attnyolo's mean mAP50 is below YOLOv8n's at {len(behind)} of {len(gaps)} "
            f"checkpoints (minutes {where}), by up to {-gap * 100:.1f} points (minute {minute:g})."
        )
    if any(len(mine[m]) > 1 or len(theirs[m]) > 1 for m in compared):
        clear = sum(
            min(r["map50"] for r in mine[m].values()) >= max(r["map50"] for r in theirs[m].values())
            for m in compared
        )
        text += (
            f" Its lowest seed is at or above YOLOv8n's highest at {clear} of {len(compared)}"
            " checkpoints."
        )
    return text


def plot(name: str, ours, peer, path: Path, label: str) -> None:
    """The mAP50 curves: per detector the mean over its seeds (markers), each seed a thin line.
    `ours` and `peer` are rows by seed, as for `table`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for runs, text, marker, colour in (
        (_by_seed(ours), f"attnyolo {label}", "o", "C0"),
        (_by_seed(peer), "YOLOv8n (Ultralytics)", "s", "C1"),
    ):
        if not runs:
            continue
        # Each seed: its checkpoints, then (attnyolo) the end of training, whose minute differs
        # from seed to seed (its --time keeps back the run's end).
        for rows in runs.values():
            points = sorted((r["minute"], r["map50"]) for r in rows or [])
            if len(runs) > 1 and points:
                axes.plot(*zip(*points, strict=True), color=colour, alpha=0.35, linewidth=0.8)
        # The mean: checkpoint by checkpoint, then the end (its mean minute), in that order.
        groups = _points(runs)
        order = sorted(k for k in groups if k != "final") + (["final"] if "final" in groups else [])
        mean = [
            (
                _mean(r["minute"] for r in groups[k].values()),
                _mean(r["map50"] for r in groups[k].values()),
            )
            for k in order
        ]
        if mean:
            seeds = f" (mean of {len(runs)} seeds)" if len(runs) > 1 else ""
            axes.plot(*zip(*mean, strict=True), marker=marker, color=colour, label=text + seeds)
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
    parser.add_argument(
        "--seeds",
        "--seed",
        nargs="+",
        type=int,
        default=[0, 1],
        help="training seeds: each trains attnyolo once and the peer once (default 0 1)",
    )
    parser.add_argument(
        "--data-seed", type=int, default=0, help="shapes: the data's seed, the same for all seeds"
    )
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
        help="train nothing: score the runs already in --work again, every seed's (the peer's "
        "checkpoints predicting again), and rewrite the docs",
    )
    parser.add_argument(
        "--label", help="a recipe attempt: its figures go to docs/recipe_log.md, not benchmarks"
    )
    parser.add_argument("--docs", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    args.seeds = list(dict.fromkeys(args.seeds))  # each seed once, in the order given

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
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "minutes": args.minutes,
        "checkpoint_minutes": args.checkpoint_minutes,
        "seeds": args.seeds,
        "data_seed": args.data_seed,
        "label": args.label,
        "set": args.set or [],
        "datasets": {},
    }
    from attnyolo.data.datasets import load_dataset

    for name in [n.strip() for n in args.datasets.split(",") if n.strip()]:
        prepared = prepare(name, work, args.images, args.test_images, args.size, args.data_seed)
        if prepared is None:
            continue
        voc, train_split, test_split = prepared
        test_set = load_dataset(voc, test_split)
        test_images = [r.image for r in test_set.records]
        entry = {
            "data": str(voc),
            "train_split": train_split,
            "test_split": test_split,
            "attnyolo": {},
            "attnyolo_runs": {},
        }
        results["datasets"][name] = entry
        reused = _by_seed(earlier.get("datasets", {}).get(name, {}).get("peer"))
        reused_summary = _by_seed(earlier.get("datasets", {}).get(name, {}).get("peer_summary"))
        data_yaml = None
        if python is not None and not args.score_only:
            data_yaml = to_yolo(name, voc, train_split, test_split, work)
        for seed in args.seeds:
            key = str(seed)
            if args.score_only:
                run = run_dir(name, args, work, seed)
                if not (run / "state.json").is_file():
                    raise SystemExit(f"--score-only: no finished run at {run}")
            else:
                run = train_attnyolo(name, voc, train_split, args, work, seed)
            entry["attnyolo"][key] = score_attnyolo(run, test_set, minutes)
            entry["attnyolo_runs"][key] = str(run)
            summary = None
            if args.peer_from:
                if key in reused:
                    entry.setdefault("peer", {})[key] = reused[key]
                    if key in reused_summary:
                        entry.setdefault("peer_summary", {})[key] = reused_summary[key]
                    entry["peer_from"] = args.peer_from
                else:
                    print(f"{name}: {args.peer_from} has no peer run of seed {seed}")
            elif python is not None and args.score_only:
                out = peer_dir(name, work, seed)
                if not (out / "peer.json").is_file():
                    raise SystemExit(f"--score-only: no peer run at {out}")
                data_yaml = work / "yolo" / name / "peer.yaml"
                summary = predict_again(python, out, test_images, args.size, data_yaml=data_yaml)
            elif python is not None:
                summary = run_peer(
                    python,
                    data_yaml,
                    test_images,
                    peer_dir(name, work, seed),
                    minutes=args.minutes,
                    checkpoint_minutes=args.checkpoint_minutes,
                    imgsz=args.size,
                    seed=seed,
                )
            if summary is not None:
                entry.setdefault("peer_summary", {})[key] = summary
                entry.setdefault("peer", {})[key] = score_peer(summary, test_set, data_yaml)
            _save(work / "results.json", results)
        label = args.label or "--recipe fast"
        plot(name, entry["attnyolo"], entry.get("peer"), docs / _png(name, args.label), label)
        print(table(name, entry["attnyolo"], entry.get("peer"), args))
        print("\n".join(["", *details(entry, args)]))
    _write_docs(results, args, docs, work)


def _png(name: str, label: str | None) -> str:
    """The curve's file under docs/: a labelled attempt's goes to docs/recipe_log/."""
    if not label:
        return f"time_to_accuracy_{name}.png"
    return f"recipe_log/{_slug(label)}_{name}.png"


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)[:60].strip("_")


def _save(path: Path, results: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(path)


def _same(values: dict, text=str) -> str:
    """One value when every seed has the same, else each seed's: `a (seed 0), b (seed 1)`."""
    shown = {seed: text(value) for seed, value in values.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{value} (seed {seed})" for seed, value in shown.items())


def _yaml_value(value) -> str:
    """A config value as YAML writes it (`false`, `auto`)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text.removesuffix("...").strip()


def details(entry: dict, args) -> list[str]:
    """The lines under a data set's table: each detector's speed per seed and their mean, its
    settings, and the training GFLOP/s of the two."""
    lines = []
    summaries = _by_seed(entry.get("peer_summary"))
    peer_speed = {
        s: v["images_per_second"] for s, v in summaries.items() if v.get("images_per_second")
    }
    if summaries:
        first = next(iter(summaries.values()))
        runs = "; ".join(
            f"seed {s}: {v.get('epochs') or 0:.1f} epochs, "
            + (f"{v['images_per_second']:.1f}" if v.get("images_per_second") else "-")
            + f" images/s, CPU use {v.get('cpu_use') or 0:.0%} of its threads"
            for s, v in summaries.items()
        )
        lines.append(
            f"YOLOv8n: Ultralytics {first.get('ultralytics')}, torch {first.get('torch')}, "
            "torch threads in training "
            + _same({s: v.get("threads", {}).get("torch_training") for s, v in summaries.items()})
            + ", loader workers "
            + _same({s: v.get("workers") for s, v in summaries.items()})
            + ", deterministic "
            + _same({s: v.get("settings", {}).get("deterministic") for s, v in summaries.items()})
            + f"; {runs}"
            + (f"; mean {_mean(peer_speed.values()):.1f} images/s." if len(peer_speed) > 1 else ".")
        )
    finals = {
        s: next((r for r in rows if r.get("final")), None)
        for s, rows in _by_seed(entry.get("attnyolo")).items()
    }
    finals = {s: r for s, r in finals.items() if r}
    our_speed = {s: r["images"] / max(r["minute"] * 60, 1e-9) for s, r in finals.items()}
    if finals:
        configs = {s: r.get("config", {}) for s, r in finals.items()}
        settings = [
            f"{key} " + _same({s: c.get(key, "not set") for s, c in configs.items()}, _setting)
            for key in ("mixed_precision", "jit_compile")
        ]
        runs = "; ".join(
            f"seed {s}: {r['epochs']} epochs, {r['images']} images in {r['minute']:.2f} training "
            f"minutes ({our_speed[s]:.1f} images/s), the whole run {r['run_minutes']:.2f} min of "
            f"its {args.minutes:g}"
            for s, r in finals.items()
        )
        lines.append(
            f"attnyolo ({', '.join(settings)} in its config.yaml): {runs}"
            + (f"; mean {_mean(our_speed.values()):.1f} images/s." if len(our_speed) > 1 else ".")
        )
    lines.append(_gflops_line(finals, summaries, our_speed, peer_speed, args.size))
    lines.append(_validator_line(summaries, _by_seed(entry.get("peer"))))
    return [line for line in lines if line]


def _validator_line(summaries: dict, peer: dict) -> str:
    """The check on how the peer is scored: its own validator's mAP50 on its last checkpoint
    against attnyolo's evaluator's on the same detector, seed by seed."""
    pairs = []
    for seed, summary in summaries.items():
        theirs = (summary or {}).get("validator")
        rows = peer.get(seed) or []
        if theirs and rows:
            ours = _fmt(rows[-1]["map50"])
            pairs.append(f"seed {seed} {theirs['map50'] * 100:.1f} against {ours}")
    if not pairs:
        return ""
    return (
        "Check on the peer's scoring: Ultralytics' own validator on its last checkpoint over the "
        "test split gives mAP50 " + "; ".join(pairs) + " by attnyolo's evaluator (the validator "
        "interpolates precision at 101 recall points, VOC all-point takes every point)."
    )


def _setting(value) -> str:
    return value if value == "not set" else _yaml_value(value)


def _gflops_line(
    finals: dict, summaries: dict, our_speed: dict, peer_speed: dict, size: int
) -> str:
    """Training GFLOP/s of each: images/s (mean over the seeds) x forward GFLOPs per image."""
    ours = _mean(r.get("gflops") for r in finals.values())
    if not finals or not our_speed:
        return ""
    if ours is None:
        return "Training GFLOP/s: attnyolo GFLOPs unknown."
    our_rate = _mean(our_speed.values()) * ours
    text = (
        f"Training GFLOP/s (training images/s, mean over the seeds, x forward GFLOPs per "
        f"image at input {size}): attnyolo "
        f"{_mean(our_speed.values()):.1f} x {ours:.2f} = {our_rate:.1f}"
    )
    if not summaries:
        return text + "."
    theirs = _mean(v.get("gflops") for v in summaries.values())
    if theirs is None or not peer_speed:
        return text + "; peer GFLOPs unknown."
    peer_rate = _mean(peer_speed.values()) * theirs
    return (
        text + f", YOLOv8n {_mean(peer_speed.values()):.1f} x {theirs:.2f} = {peer_rate:.1f}: "
        f"attnyolo's is {our_rate / peer_rate:.2f} x YOLOv8n's."
    )


def _seeds_text(seeds: list[int], no_peer: bool) -> str:
    who = "attnyolo" if no_peer else "each detector"
    if len(seeds) == 1:
        return f"{who} trained once (seed {seeds[0]}),"
    listed = ", ".join(str(s) for s in seeds[:-1]) + f" and {seeds[-1]}"
    each = "" if no_peer else " each"
    return f"{who} trained once per seed, seeds {listed} ({len(seeds)} runs{each}),"


RESULTS = "time_to_accuracy_results.json"


def _measured(results: dict, args) -> dict:
    """How a data set's figures in this run were measured: the words above its table."""
    return {
        "cpu": results["machine"]["cpu"],
        "cores": results["machine"]["cores"],
        "date": time.strftime("%Y-%m-%d"),
        "no_peer": bool(args.no_peer),
        "minutes": args.minutes,
        "size": args.size,
        "seeds": results.get("seeds", args.seeds),
        "data_seed": results.get("data_seed", args.data_seed),
        "images": args.images,
        "test_images": args.test_images,
        "set": results.get("set") or [],
        "rescored": bool(getattr(args, "score_only", False) or results.get("rescored")),
        "peer_from": getattr(args, "peer_from", None),
    }


def merged(path: Path, results: dict, args) -> dict:
    """`docs/time_to_accuracy_results.json` with this run's data sets put in (each with how it
    was measured), the other data sets' kept from earlier runs; entries of the layout before
    that record (no `measured`) are dropped."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    datasets = {
        name: entry
        for name, entry in earlier.get("datasets", {}).items()
        if isinstance(entry, dict) and "measured" in entry
    }
    for name, entry in results["datasets"].items():
        measured = _measured(results, args)
        if measured["peer_from"]:
            # The date of the peer's own run, where the file it came from says it.
            source = json.loads(Path(measured["peer_from"]).read_text())
            earlier_entry = source.get("datasets", {}).get(name, {})
            measured["peer_date"] = earlier_entry.get("measured", {}).get("date")
            measured["peer_cpu"] = earlier_entry.get("measured", {}).get("cpu")
        datasets[name] = {**_slim(entry), "measured": measured}
    return {"datasets": datasets}


def _slim(entry: dict) -> dict:
    """A data set's results without the peer's local-socket records: runs from before the
    peer's audit skipped them list every connection of its loader workers (AF_UNIX, family=1)."""
    summaries = {}
    for seed, summary in _by_seed(entry.get("peer_summary")).items():
        events = [
            e
            for e in summary.get("network_events", [])
            if "family=1," not in (e.get("args") or [""])[0]
        ]
        summaries[seed] = {**summary, "network_events": events}
    return {**entry, "peer_summary": summaries} if summaries else entry


def _dataset_header(name: str, measured: dict) -> str:
    what = (
        "attnyolo only (`--no-peer`)"
        if measured["no_peer"]
        else "both detectors from scratch, one after the other"
    )
    text = (
        f"Measured on {measured['cpu']} ({measured['cores']} cores), {measured['date']}: {what}, "
        f"a {measured['minutes']:g}-minute budget at input {measured['size']}, "
        + _seeds_text(measured["seeds"], measured["no_peer"])
        + " extra settings: "
        + (", ".join(measured["set"]) or "none")
        + "."
    )
    if name == "shapes":
        text += (
            f" Data: {measured['images']:,} train and {measured['test_images']:,} test images "
            f"at {measured['size']}x{measured['size']} whose colour says nothing about the class "
            f"(data seed {measured['data_seed']} for every training seed)."
        )
    else:
        text += f" Data: `../shared/data/{name}`, trainval to train, test to score."
    if measured.get("rescored"):
        text += " The scores are from `--score-only` over the runs' saved checkpoints."
    if measured.get("peer_from"):
        text += (
            " YOLOv8n's runs are not trained again: they are those of an earlier run of the "
            "benchmark (`--peer-from`"
            + (f", {measured['peer_date']}" if measured.get("peer_date") else "")
            + (f", {measured['peer_cpu']}" if measured.get("peer_cpu") else "")
            + f"; its figures are kept with these in `docs/{RESULTS}`): a fair comparison only "
            "where that run had the same machine."
        )
    return text


def _write_docs(results: dict, args, docs: Path, work: Path) -> None:
    intro = (
        "Each detector from scratch on 2 cores for the same budget of training minutes, at "
        "each checkpoint scored by attnyolo's evaluator on the same test split (VOC mAP@0.5 "
        "all-point, COCO AP@[.5:.95]). The peer's checkpoints detect as its own validator does "
        "(every class above the threshold per box), its classes matched to the test set's by "
        "name. A data set's table is rewritten when `bench/bench_time_to_accuracy.py` runs on "
        f"it; every figure is also in `docs/{RESULTS}`."
    )
    if args.label:
        sections = []
        for name, entry in results["datasets"].items():
            sections.append(_dataset_header(name, _measured(results, args)))
            sections.append(table(name, entry["attnyolo"], entry.get("peer"), args))
            sections.append(f"![{name}]({_png(name, args.label)})")
            sections += details(entry, args)
        log = docs / "recipe_log.md"
        existing = log.read_text() if log.exists() else "# Recipe log\n"
        block = f"## Attempt: {args.label}\n\n" + "\n\n".join(sections)
        tmp = log.with_name(f".{log.name}.tmp")
        tmp.write_text(existing.rstrip() + "\n\n" + block + "\n")
        tmp.replace(log)
        print(f"appended to {log}")
        print(f"results: {work / 'results.json'}")
        return
    everything = merged(docs / RESULTS, results, args)
    sections = [intro]
    for name, entry in everything["datasets"].items():
        measured = entry["measured"]
        shown = argparse.Namespace(
            minutes=measured["minutes"], size=measured["size"], no_peer=measured["no_peer"]
        )
        sections.append(_dataset_header(name, measured))
        sections.append(table(name, entry["attnyolo"], entry.get("peer"), shown))
        sections.append(f"![{name}]({_png(name, None)})")
        sections += details(entry, shown)
    _save(docs / RESULTS, everything)
    write_section(docs / "benchmarks.md", HEADING, HEADING + "\n\n" + "\n\n".join(sections))
    print(f"wrote {docs / 'benchmarks.md'} and {docs / RESULTS}")
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    main()
