"""`attnyolo ablate` end to end on a tiny shapes set: runs, report, a stop in the middle and
its continuation, finished runs brought in, and the refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from attnyolo.cli import main
from attnyolo.data.synthetic import generate_shapes
from attnyolo.engine import ablate as ablate_module
from attnyolo.engine.ablate import ablate, attention_label, run_name, summarize

TINY = {"input_size": [64, 64], "batch_size": 4}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate_data")
    return generate_shapes(
        root, num_images=16, size=64, seed=0, colour="random", splits=(0.5, 0.25, 0.25)
    )


def test_names_and_labels():
    assert attention_label(None) == "none" == attention_label("None")
    assert attention_label({"type": "cbam", "reduction": 16}) == "cbam:reduction=16"
    assert run_name("cbam:reduction=16,kernel_size=3", 2) == "cbam_reduction_16_kernel_size_3_seed2"
    assert run_name(None, 0) == "none_seed0"


def test_ablation_stops_continues_and_takes_finished_runs(tiny_data, tmp_path, monkeypatch):
    out = tmp_path / "ablation"
    kwargs = dict(
        data=tiny_data,
        attentions=["se"],
        seeds=[0, 1],
        epochs=1,
        overrides=TINY,
        samples=50,
        latency=False,
    )
    # Stop the ablation as a kill would, after the third run has trained but before it is
    # evaluated: two runs are done, the third has weights but no result.
    real = ablate_module.evaluate_run
    calls = []

    def stopping(*args, **kw):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(ablate_module, "evaluate_run", stopping)
    with pytest.raises(KeyboardInterrupt):
        ablate(out, **kwargs)
    runs = out / "runs"
    done = {p.parent.name for p in runs.glob("*/ablation_result.json")}
    assert done == {"none_seed0", "se_seed0"}  # seed by seed: complete pairs first
    assert (runs / "none_seed1" / "weights" / "last.keras").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in runs.glob("*/weights/last.keras")}

    monkeypatch.setattr(ablate_module, "evaluate_run", real)
    report = ablate(out, **kwargs)
    # Nothing done before was trained again.
    for path, stamp in stamps.items():
        assert path.stat().st_mtime_ns == stamp, path
    assert {p.parent.name for p in runs.glob("*/ablation_result.json")} == {
        "none_seed0",
        "se_seed0",
        "none_seed1",
        "se_seed1",
    }
    rows = {r["attention"]: r for r in report["rows"]}
    assert list(rows) == ["none", "se"]
    for r in rows.values():
        assert r["seeds"] == [0, 1]
        assert r["map50_mean"] == pytest.approx(np.mean(r["map50"]))
        assert r["map50_std"] == pytest.approx(np.std(r["map50"], ddof=1))
        assert r["params"] > 0 and r["flops"] > 0
    assert rows["se"]["params"] > rows["none"]["params"]
    diff = rows["se"]["map50_diff"]
    assert diff["value"] == pytest.approx(
        np.mean(rows["se"]["map50"]) - np.mean(rows["none"]["map50"])
    )
    assert diff["low"] <= diff["value"] <= diff["high"]
    assert "map50_diff" not in rows["none"]
    for name in ("results.md", "results.json", "results.png"):
        assert (out / name).is_file()
    assert "| se | 2 |" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["rows"][1]["attention"] == "se"

    # The same runs brought in as finished runs: the same figures, nothing trained.
    folders = sorted(runs.iterdir())
    again = ablate(tmp_path / "elsewhere", data=tiny_data, runs=folders, samples=50, latency=False)
    got = {r["attention"]: r["map50"] for r in again["rows"]}
    assert got == {name: r["map50"] for name, r in rows.items()}

    # Other shared settings in the same folder are refused.
    with pytest.raises(ValueError, match="other settings"):
        ablate(out, **{**kwargs, "epochs": 2})
    # The same runs twice are refused.
    with pytest.raises(ValueError, match="two runs for"):
        ablate(tmp_path / "twice", data=tiny_data, runs=[folders[0], *folders], latency=False)


def test_cli_ablate(tiny_data, tmp_path, capsys):
    out = tmp_path / "cli"
    main(
        [
            "ablate",
            "--data",
            str(tiny_data),
            "--attention",
            "eca",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--set",
            "input_size=[64, 64]",
            "--set",
            "batch_size=4",
            "--bootstrap",
            "20",
            "--no-latency",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "| eca | 1 |" in printed and "results.md" in printed
    assert (out / "results.png").is_file()


def test_unknown_type_is_refused_before_anything_is_trained(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="Unknown attention"):
        ablate(tmp_path / "x", data=tiny_data, attentions=["nope"], epochs=1)
    assert not (tmp_path / "x" / "runs").exists()


def test_a_budget_or_runs_is_needed(tmp_path):
    with pytest.raises(ValueError, match="budget"):
        ablate(tmp_path, data="anything")


def test_summary_ranks_only_what_its_interval_separates(tmp_path):
    from attnyolo.metrics.bootstrap import match_voc

    rng = np.random.default_rng(0)
    gts = []
    for _ in range(40):
        xy = rng.uniform(0, 60, (3, 2))
        gts.append({"boxes": np.concatenate([xy, xy + 20], 1), "classes": rng.integers(0, 2, 3)})

    def run(name, seed, noise):
        def jitter(boxes):
            moved = boxes + rng.normal(0, noise, (3, 4))
            return np.concatenate(
                [np.minimum(moved[:, :2], moved[:, 2:]), np.maximum(moved[:, :2], moved[:, 2:])], 1
            )

        dets = [
            {
                "boxes": jitter(g["boxes"]),
                "scores": rng.random(3),
                "classes": g["classes"],
            }
            for g in gts
        ]
        where = tmp_path / f"{name}{seed}"
        where.mkdir()
        matched = match_voc(gts, dets, 2)
        matched.save(where / ablate_module.MATCHED)
        from attnyolo.metrics.bootstrap import weighted_map

        return {
            "attention": name,
            "seed": seed,
            "where": str(where),
            "run": str(where),
            "map50": weighted_map(matched),
            "coco_ap": 0.1 * seed,
            "params": 1,
            "flops": 1,
            "input_size": [64, 64],
            "epochs": 1,
            "test_images": ["a"],
        }

    results = [run("none", s, 6.0) for s in range(3)]
    results += [run("good", s, 0.5) for s in range(3)]
    results += [run("same", s, 6.0) for s in range(3)]
    report = summarize(results, samples=300)
    assert [r["attention"] for r in report["ranking"]] == ["good"]
    assert "same" in report["undecided"]
    assert Path(results[0]["where"]).is_dir()
