"""`attnyolo ablate`: did attention help? One recipe, several attention types, several seeds.

Every (attention type, seed) pair is one ordinary training run (`attnyolo train`) on the same data,
split and budget, in `<output>/runs/<type>_seed<N>/`, evaluated on the test split. The runs go
seed by seed (every type for seed 0, then for seed 1, ...), so that a stopped ablation already
holds complete pairs. A run is done when its `ablation_result.json` exists (written last, after
the evaluation); a run folder without it is resumed (`train(resume=...)`), so a killed ablation,
started again with the same command, continues with what was not done and loses at most the
epoch in progress.

The report (`results.md`, `results.json`, `results.png`) gives per type the mean and standard
deviation over seeds of mAP@0.5 and COCO AP, the parameters, GFLOPs and measured latency, and the
paired difference against `none` (same seed) with a bootstrap interval
(`attnyolo.metrics.bootstrap`): for mAP@0.5 seeds and test images are resampled together; COCO AP
is known per run only, so its interval resamples seeds alone. Types are ranked only where the
mAP@0.5 interval excludes zero.

Finished runs trained elsewhere (a GPU machine, say) join with `runs=[folder, ...]`: each is
evaluated here on the same data and split, its type and seed read from its `config.yaml`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnyolo.metrics.bootstrap import MatchedDetections, paired_bootstrap, seed_bootstrap
from attnyolo.utils import atomic_write

DEFAULT_ATTENTIONS = ("none", "se", "cbam", "eca", "ca")
DEFAULT_SEEDS = (0, 1, 2)
BUILTIN_DATA = "shapes"  # the built-in shapes, colour independent of the class
BUILTIN_IMAGES = 1000
BASELINE = "none"
RESULT = "ablation_result.json"
MATCHED = "ablation_matched.npz"
# What every run shares and a continued ablation must not change (types and seeds may grow).
SHARED_SETTINGS = ("data", "recipe", "minutes", "epochs", "split", "train_split", "overrides")


def run_name(attention: str | None, seed: int) -> str:
    """The run folder's name: `cbam_seed0`; options kept readable (`cbam_reduction_16_seed0`)."""
    label = re.sub(r"[^A-Za-z0-9]+", "_", attention_label(attention)).strip("_")
    return f"{label}_seed{seed}"


def attention_label(attention: Any) -> str:
    """The type as the table names it: `none`, `cbam`, `cbam:reduction=16`."""
    if attention is None or (isinstance(attention, str) and attention.lower() in ("", "none")):
        return BASELINE
    if isinstance(attention, dict):  # a YAML mapping {type: cbam, reduction: 16}
        options = {k: v for k, v in attention.items() if k != "type"}
        extra = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
        return str(attention["type"]) + (f":{extra}" if extra else "")
    return str(attention)


def builtin_data(output: Path) -> Path:
    """The built-in shapes set with colours independent of the class (only shape tells the
    class), written once into `<output>/data`."""
    from attnyolo.data.synthetic import generate_shapes

    return generate_shapes(
        output / "data" / "shapes_random_colour", num_images=BUILTIN_IMAGES, seed=0, colour="random"
    )


def ablate(
    output: str | os.PathLike,
    data: str | os.PathLike = BUILTIN_DATA,
    attentions: Sequence[str] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    minutes: float | None = None,
    epochs: int | None = None,
    recipe: str | None = "fast",
    overrides: dict[str, Any] | None = None,
    runs: Sequence[str | os.PathLike] = (),
    split: str = "test",
    train_split: str = "trainval",
    samples: int = 2000,
    level: float = 0.95,
    latency: bool = True,
) -> dict:
    """Trains and evaluates every (type, seed) not yet done, evaluates `runs`, and writes the
    report; returns it (see `summarize`).

    Args:
        output: the ablation folder (runs/, results.*); started again, it continues.
        data: any data set `attnyolo train` reads, or "shapes" for the built-in one.
        attentions: the types (registry names, options as `cbam:reduction=16`); `none` is
            always added as the baseline. None: `DEFAULT_ATTENTIONS`, or with `runs` and no
            budget, only what the runs hold.
        seeds: one run per type and seed.
        minutes, epochs: the budget of every run (one of them; `minutes` wins when both).
        recipe, overrides: the training settings (`attnyolo train --recipe`, `--set`).
        runs: finished run folders to evaluate and include.
        split, train_split: the evaluation and training splits.
        samples, level: bootstrap rounds and interval level.
        latency: measure each type's network latency (batch 1) on its trained model.
    """
    output = Path(output)
    train_here = minutes is not None or epochs is not None
    if not train_here and not runs:
        raise ValueError("give a budget (minutes or epochs) to train, or finished runs to compare")
    if attentions is None:
        attentions = DEFAULT_ATTENTIONS if train_here else ()
    labels = list(dict.fromkeys([BASELINE, *map(attention_label, attentions)]))
    if train_here:
        from attnyolo.engine.config import parse_attention

        for label in labels:
            parse_attention(None if label == BASELINE else label)  # unknown names fail now
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    data_root = builtin_data(output) if str(data) == BUILTIN_DATA else Path(data)
    settings = {
        "data": str(data),
        "recipe": recipe,
        "minutes": minutes,
        "epochs": None if minutes is not None else epochs,
        "split": split,
        "train_split": train_split,
        "overrides": dict(overrides or {}),
    }
    _check_settings(output, settings, labels if train_here else [], seeds if train_here else [])

    results = []
    if train_here:
        for seed in seeds:
            for label in labels:
                results.append(_trained_run(output, data_root, settings, label, seed))
    for folder in runs:
        results.append(_finished_run(output, data_root, split, Path(folder)))
    _check_unique(results)
    if latency:
        _add_latency(output, results)
    report = summarize(results, samples=samples, level=level)
    report["settings"] = settings
    write_report(report, output)
    return report


def _check_settings(output: Path, settings: dict, labels: list[str], seeds: list[int]) -> None:
    path = output / "ablation.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        changed = [k for k in SHARED_SETTINGS if saved["settings"].get(k) != settings[k]]
        if changed and labels:
            was = ", ".join(f"{k} {saved['settings'].get(k)!r}" for k in changed)
            raise ValueError(
                f"{output}: an ablation with other settings ({was}) is there; continue it with "
                "the same settings or choose another output folder"
            )
        labels = list(dict.fromkeys([*saved["attentions"], *labels]))
        seeds = list(dict.fromkeys([*saved["seeds"], *seeds]))
    record = {"settings": settings, "attentions": labels, "seeds": seeds}
    atomic_write(path, json.dumps(record, indent=2))


def _trained_run(output: Path, data_root: Path, settings: dict, label: str, seed: int) -> dict:
    from attnyolo.engine.train import resolve_config, train

    run = output / "runs" / run_name(label, seed)
    if (run / RESULT).is_file():
        return json.loads((run / RESULT).read_text())
    if run.is_dir() and not (run / "config.yaml").is_file():
        shutil.rmtree(run)  # stopped before its settings were written: nothing to keep
    started = time.monotonic()
    if (run / "config.yaml").is_file():
        print(f"ablation: continuing {run}")
        train(resume=run)
    else:
        print(f"ablation: training {run.name}")
        budget = (
            {"time": settings["minutes"]}
            if settings["minutes"] is not None
            else {"epochs": settings["epochs"]}
        )
        config = resolve_config(
            recipe=settings["recipe"],
            **{
                **settings["overrides"],
                "data": str(data_root),
                "output": str(run.parent),
                "name": run.name,
                "attention": None if label == BASELINE else label,
                "seed": seed,
                "train_split": settings["train_split"],
                "val_split": None,
                "eval_period": 0,
                "save_period": 0,
                **budget,
            },
        )
        train(config)
    print(f"ablation: {run.name} trained ({(time.monotonic() - started) / 60:.1f} min here)")
    return evaluate_run(run, data_root, settings["split"], label=label, seed=seed, where=run)


def _finished_run(output: Path, data_root: Path, split: str, folder: Path) -> dict:
    from attnyolo.engine.config import TrainConfig

    if not (folder / "config.yaml").is_file():
        raise ValueError(f"{folder}: not a run folder (no config.yaml)")
    config = TrainConfig.from_run(folder)
    label = attention_label(config["attention"])
    where = output / "external" / f"{folder.name}_{_short_hash(folder)}"
    if (where / RESULT).is_file():
        saved = json.loads((where / RESULT).read_text())
        if saved["run"] == str(folder.resolve()):
            return saved
    return evaluate_run(folder, data_root, split, label=label, seed=config["seed"], where=where)


def _short_hash(folder: Path) -> str:
    return hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]


def evaluate_run(
    run: Path, data_root: Path, split: str, *, label: str, seed: int, where: Path
) -> dict:
    """Evaluates `run`'s `weights/last.keras` on `split`; writes into `where` the evaluation
    report, the matched detections (for the bootstrap) and, last, `ablation_result.json`."""
    from attnyolo.data.datasets import load_dataset
    from attnyolo.engine.evaluate import evaluate_model, write_report
    from attnyolo.engine.predict import open_model
    from attnyolo.engine.summary import summarize as model_counts
    from attnyolo.engine.train import RunState
    from attnyolo.metrics.bootstrap import match_voc, weighted_map
    from attnyolo.models.saving import load_detector

    model_path = run / "weights" / "last.keras"
    if not model_path.is_file():
        raise ValueError(f"{run}: no weights/last.keras (the run has not saved a model)")
    detector = load_detector(model_path)
    runtime = open_model(detector)  # a batch-norm-folded copy; `detector` stays as loaded
    names = list(runtime.config.classes)
    dataset = load_dataset(data_root, split=split, class_names=names)
    evaluation = evaluate_model(runtime, dataset, progress=False)
    write_report(evaluation, dataset, where / "evaluation", plots=False)
    matched = match_voc(dataset.records, evaluation.detections, len(names))
    if not math.isclose(weighted_map(matched), evaluation.map50, abs_tol=1e-9):
        raise RuntimeError(f"{run}: the bootstrap's mAP differs from the evaluation's")
    matched.save(where / MATCHED)
    counts = model_counts(detector)
    state = RunState.load(run)
    coco = evaluation.coco.stats.get("AP") if evaluation.coco is not None else None
    result = {
        "attention": label,
        "seed": int(seed),
        "run": str(run.resolve()),
        "where": str(where),
        "map50": float(evaluation.map50),
        "coco_ap": None if coco is None or math.isnan(coco) else float(coco),
        "params": counts["params"],
        "trainable_params": counts["trainable_params"],
        "flops": counts["flops"],
        "input_size": counts["input_size"],
        "epochs": state.epoch,
        "train_seconds": state.trained_seconds,
        "images_seen": state.images,
        "test_images": [str(r.image_id) for r in dataset.records],
    }
    atomic_write(where / RESULT, json.dumps(result, indent=2))
    print(
        f"ablation: {run.name}: mAP@0.5 {result['map50'] * 100:.1f}%"
        + (f", COCO AP {result['coco_ap'] * 100:.1f}%" if result["coco_ap"] is not None else "")
    )
    return result


def _check_unique(results: list[dict]) -> None:
    seen: dict[tuple, str] = {}
    for r in results:
        key = (r["attention"], r["seed"])
        if key in seen:
            raise ValueError(
                f"two runs for {r['attention']} with seed {r['seed']}: {seen[key]} and {r['run']}"
            )
        seen[key] = r["run"]
    test_sets = {tuple(r["test_images"]) for r in results}
    if len(test_sets) > 1:
        raise ValueError("the runs were evaluated on different test images")


def _add_latency(output: Path, results: list[dict]) -> None:
    """Network-only latency at batch 1 per type (`summary`'s `measure_latency`), on the first
    run of the type; kept in `latency.json` so that a continued ablation measures only new
    types."""
    from attnyolo.engine.summary import measure_latency
    from attnyolo.models.saving import load_detector

    path = output / "latency.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for r in sorted(results, key=lambda r: r["seed"]):
        if r["attention"] in saved:
            continue
        detector = load_detector(Path(r["run"]) / "weights" / "last.keras")
        saved[r["attention"]] = measure_latency(detector)
        atomic_write(path, json.dumps(saved, indent=2))
    for r in results:
        r["latency_ms"] = saved.get(r["attention"])


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return float(np.mean(values)), std


def summarize(results: list[dict], samples: int = 2000, level: float = 0.95) -> dict:
    """The ablation's table from its runs' results: per type the figures over its seeds, and
    against `none` the paired differences with bootstrap intervals and the ranking."""
    by_type: dict[str, dict[int, dict]] = {}
    for r in results:
        by_type.setdefault(r["attention"], {})[r["seed"]] = r
    order = sorted(by_type, key=lambda t: (t != BASELINE, t))
    baseline = by_type.get(BASELINE, {})
    matched: dict[str, MatchedDetections] = {}

    def runs_of(t, seeds):
        out = []
        for s in seeds:
            key = by_type[t][s]["where"]
            if key not in matched:
                matched[key] = MatchedDetections.load(Path(key) / MATCHED)
            out.append(matched[key])
        return out

    rows = []
    for t in order:
        runs = by_type[t]
        seeds = sorted(runs)
        first = runs[seeds[0]]
        map_mean, map_std = _mean_std([runs[s]["map50"] for s in seeds])
        coco_mean, coco_std = _mean_std([runs[s]["coco_ap"] for s in seeds])
        row = {
            "attention": t,
            "seeds": seeds,
            "map50": [runs[s]["map50"] for s in seeds],
            "coco_ap": [runs[s]["coco_ap"] for s in seeds],
            "map50_mean": map_mean,
            "map50_std": map_std,
            "coco_ap_mean": coco_mean,
            "coco_ap_std": coco_std,
            "map50_interval": paired_bootstrap(
                runs_of(t, seeds), samples=samples, level=level
            ).to_dict(),
            "params": first["params"],
            "flops": first["flops"],
            "input_size": first["input_size"],
            "latency_ms": first.get("latency_ms"),
            "epochs_mean": float(np.mean([runs[s]["epochs"] for s in seeds])),
        }
        paired = sorted(set(seeds) & set(baseline))
        if t != BASELINE and paired:
            row["paired_seeds"] = paired
            diff = paired_bootstrap(
                runs_of(t, paired), runs_of(BASELINE, paired), samples=samples, level=level
            )
            row["map50_diff"] = diff.to_dict()
            row["map50_diff_excludes_zero"] = diff.excludes_zero()
            coco = [runs[s]["coco_ap"] for s in paired]
            coco_base = [baseline[s]["coco_ap"] for s in paired]
            if None not in coco and None not in coco_base:
                row["coco_ap_diff"] = seed_bootstrap(
                    coco, coco_base, samples=samples, level=level
                ).to_dict()
        rows.append(row)
    ranked = sorted(
        (r for r in rows if r.get("map50_diff_excludes_zero")),
        key=lambda r: -r["map50_diff"]["value"],
    )
    return {
        "rows": rows,
        "ranking": [
            {"attention": r["attention"], "map50_diff": r["map50_diff"]["value"]} for r in ranked
        ],
        "undecided": [
            r["attention"] for r in rows if "map50_diff" in r and not r["map50_diff_excludes_zero"]
        ],
        "samples": samples,
        "level": level,
        "test_images": len(results[0]["test_images"]) if results else 0,
    }


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}"


def _mean_pm(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{_pct(mean)} ± {_pct(std)}" if std is not None else f"{_pct(mean)} (1 seed)"


def _diff(interval: dict | None) -> str:
    if interval is None:
        return "—"
    return (
        f"{interval['value'] * 100:+.1f} [{interval['low'] * 100:+.1f}, "
        f"{interval['high'] * 100:+.1f}]"
    )


def format_markdown(report: dict) -> str:
    """The table and what it says, as Markdown."""
    level = round(report["level"] * 100)
    lines = [
        f"| attention | seeds | mAP@0.5 % (mean ± sd) | COCO AP % (mean ± sd) | Δ mAP@0.5 vs none "
        f"[{level}% CI] | Δ COCO AP vs none [{level}% CI] | params | GFLOPs | latency ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        latency = "n/a" if r["latency_ms"] is None else f"{r['latency_ms']:.1f}"
        lines.append(
            f"| {r['attention']} | {len(r['seeds'])} | {_mean_pm(r['map50_mean'], r['map50_std'])}"
            f" | {_mean_pm(r['coco_ap_mean'], r['coco_ap_std'])} | {_diff(r.get('map50_diff'))}"
            f" | {_diff(r.get('coco_ap_diff'))} | {r['params']:,} | {r['flops'] / 1e9:.2f}"
            f" | {latency} |"
        )
    size = "x".join(map(str, report["rows"][0]["input_size"])) if report["rows"] else "?"
    lines += [
        "",
        f"{report['test_images']} test images; GFLOPs and latency (network only, batch 1, this "
        f"machine) at {size}. Intervals: {report['samples']} bootstrap rounds; for mAP@0.5 "
        "seeds and test images resampled together, paired by seed; for COCO AP seeds only.",
        "",
    ]
    fewest = min((len(r["seeds"]) for r in report["rows"]), default=0)
    if fewest and fewest < 5:
        lines.append(
            f"With {fewest} seed{'s' if fewest > 1 else ''} per type the seed part of each "
            "interval is rough: resampling so few runs cannot reach beyond them, so an interval "
            "can be narrower than the spread a new seed would show; more seeds make it "
            "trustworthy."
        )
    if report["ranking"]:
        ranked = ", ".join(
            f"{r['attention']} ({r['map50_diff'] * 100:+.1f})" for r in report["ranking"]
        )
        lines.append(f"Different from none (mAP@0.5 interval excludes zero): {ranked}.")
    else:
        lines.append("No type differs from none: every mAP@0.5 interval includes zero.")
    if report["undecided"]:
        lines.append(
            "Not distinguishable from none at this budget and seed count: "
            + ", ".join(report["undecided"])
            + "."
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict, output: Path) -> None:
    atomic_write(output / "results.json", json.dumps(report, indent=2))
    atomic_write(output / "results.md", "# Ablation\n\n" + format_markdown(report))
    if report["rows"]:
        plot_report(report, output / "results.png")


def plot_report(report: dict, path: Path) -> Path:
    """Left: mAP@0.5 per seed (points), mean and interval per type; right: the paired
    difference against none with its interval."""
    from attnyolo.engine.plots import save_figure, subplots

    rows = report["rows"]
    names = [r["attention"] for r in rows]
    x = np.arange(len(rows))
    fig, (left, right) = subplots(1, 2, figsize=(max(8, 1.6 * len(rows) + 4), 4.2))
    for i, r in enumerate(rows):
        values = np.array(r["map50"]) * 100
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        left.scatter(i + jitter, values, s=18, color="tab:gray", zorder=3, label=None)
        ci = r["map50_interval"]
        left.errorbar(
            i,
            ci["value"] * 100,
            yerr=[[(ci["value"] - ci["low"]) * 100], [(ci["high"] - ci["value"]) * 100]],
            fmt="o",
            color="tab:blue",
            capsize=4,
            zorder=4,
        )
    left.set_xticks(x, names, rotation=30, ha="right")
    left.set_ylabel("test mAP@0.5 (%)")
    left.set_title("per seed (grey), mean and interval (blue)")
    diffs = [(i, r["map50_diff"]) for i, r in enumerate(rows) if "map50_diff" in r]
    right.axhline(0, color="black", linewidth=0.8)
    for i, d in diffs:
        colour = "tab:green" if d["low"] > 0 else "tab:red" if d["high"] < 0 else "tab:gray"
        right.errorbar(
            i,
            d["value"] * 100,
            yerr=[[(d["value"] - d["low"]) * 100], [(d["high"] - d["value"]) * 100]],
            fmt="o",
            color=colour,
            capsize=4,
        )
    right.set_xticks(x, names, rotation=30, ha="right")
    right.set_ylabel("Δ mAP@0.5 vs none (points)")
    right.set_title(f"paired difference, {round(report['level'] * 100)}% interval")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110, tight=False)
