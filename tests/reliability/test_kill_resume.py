"""A real short run killed with SIGKILL at several moments resumes with `--resume` to the same
end as a run that was never killed: weights, optimizer state, weight average and schedule.

Each case trains in a subprocess (`kill_driver.py`) that kills itself at the moment named, then
resumes in a fresh one; the uninterrupted run of the same seed is the reference. Slow (about
five minutes on 2 cores): `python -m pytest -m slow tests/reliability`.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attnyolo.data.synthetic import generate_shapes

pytestmark = pytest.mark.slow
DRIVER = Path(__file__).with_name("kill_driver.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", num_images=40, seed=5)


def settings(shapes, output, name, **extra):
    return {
        "data": str(shapes),
        "classes": str(shapes / "classes.txt"),
        "input_size": 64,
        "epochs": 3,
        "batch_size": 8,
        "optimizer": "adam",
        "ema": True,
        "eval_period": 1,
        "bn_recalibration": 2,
        "save_period": 0,
        "train_split": "train",
        "val_split": "val",
        "workers": 1,
        "jit_compile": False,
        "seed": 0,
        "output": str(output),
        "name": name,
        **extra,
    }


def drive(tmp_path, spec) -> int:
    path = tmp_path / f"spec_{abs(hash(json.dumps(spec, sort_keys=True)))}.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"TF_CPP_MIN_LOG_LEVEL": "2", **__import__("os").environ},
    )
    if done.returncode not in (0, -9):
        raise AssertionError(f"driver failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.returncode


def resume_arrays(run: Path) -> dict:
    with np.load(run / "resume.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def reference(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    assert drive(out, {"config": settings(shapes, out, "ref")}) == 0
    return out / "ref"


def assert_same_end(run: Path, reference: Path) -> None:
    ours, theirs = resume_arrays(run), resume_arrays(reference)
    assert sorted(ours) == sorted(theirs)
    state, expected = json.loads(str(ours.pop("state"))), json.loads(str(theirs.pop("state")))
    assert str(ours.pop("classes")) == str(theirs.pop("classes"))
    assert state["epoch"] == expected["epoch"] == 3
    # The same schedule: every epoch's learning rate, and the losses it trained to.
    assert [r["epoch"] for r in state["history"]] == [1, 2, 3]
    for mine, ref in zip(state["history"], expected["history"], strict=True):
        assert mine["lr"] == pytest.approx(ref["lr"], rel=1e-6)
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-3)
    for key in theirs:  # model.*, optimizer.* (its step count too), ema.*
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # Nothing half-written is left, and every model file loads.
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    from attnyolo.models.saving import load_detector

    for path in (run / "weights").glob("*.keras"):
        load_detector(path)
    assert json.loads((run / "state.json").read_text())["epoch"] == 3


@pytest.mark.parametrize(
    "moment",
    [
        ("batch", 5),  # during epoch 2 (3 batches an epoch)
        ("write:last", 2),  # while epoch 2's last.keras is written
        ("write:resume", 2),  # while epoch 2's commit point is written
        ("write:state", 2),  # after the commit point, while state.json is written
        ("validate", 2),  # during epoch 2's validation
        ("recalibrate", 3),  # during a batch-norm re-estimation (epoch 2's first)
    ],
    ids=lambda m: f"{m[0]}-{m[1]}",
)
def test_a_run_killed_at_any_moment_resumes_to_the_same_end(shapes, tmp_path, reference, moment):
    config = settings(shapes, tmp_path, "run")
    assert drive(tmp_path, {"config": config, "kill": list(moment)}) == -9
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file()
    before = json.loads((run / "state.json").read_text())["epoch"]
    assert before <= 2
    assert drive(tmp_path, {"resume": str(run)}) == 0
    assert_same_end(run, reference)


def test_a_timed_run_killed_and_resumed_keeps_its_budget(shapes, tmp_path):
    config = settings(shapes, tmp_path, "timed", epochs=30, time=0.4, eval_period=0)
    assert drive(tmp_path, {"config": config, "kill": ["batch", 12]}) == -9
    run = tmp_path / "timed"
    killed = json.loads((run / "state.json").read_text())
    assert drive(tmp_path, {"resume": str(run)}) == 0
    state = json.loads((run / "state.json").read_text())
    # The wall time of both sessions counts against the one budget (less the epoch in progress
    # at the kill, whose time was not yet recorded), and the run trained on after the kill. The
    # resumed session's end is estimated afresh: on a loaded machine it overran a 24 s budget by
    # 3 s once (27.1 s), hence the 15 % allowance.
    assert killed["seconds"] < state["seconds"] <= 1.15 * 0.4 * 60
    assert state["epoch"] > killed["epoch"]


def test_a_killed_ablation_continues_with_the_same_command(shapes, tmp_path):
    common = {
        "data": str(shapes),
        "attentions": ["se"],
        "seeds": [0],
        "epochs": 2,
        "recipe": "fast",
        "overrides": {"input_size": 64, "workers": 1, "jit_compile": False},
        "train_split": "train",
        "split": "test",
        "samples": 200,
        "latency": False,
    }
    killed = {**common, "output": str(tmp_path / "abl")}
    # 2 batches an epoch at batch 8 (fast recipe) over 28 images: batch 7 is the se run's 2nd epoch.
    assert drive(tmp_path, {"ablate": killed, "kill": ["batch", 7]}) == -9
    assert not (tmp_path / "abl" / "results.json").exists()
    assert drive(tmp_path, {"ablate": killed}) == 0
    reference = {**common, "output": str(tmp_path / "ref")}
    assert drive(tmp_path, {"ablate": reference}) == 0
    ours = json.loads((tmp_path / "abl" / "results.json").read_text())
    theirs = json.loads((tmp_path / "ref" / "results.json").read_text())
    for mine, ref in zip(ours["rows"], theirs["rows"], strict=True):
        assert mine["attention"] == ref["attention"]
        assert mine["map50"] == pytest.approx(ref["map50"], abs=0.02)
    for label in ("none_seed0", "se_seed0"):
        a = resume_arrays(tmp_path / "abl" / "runs" / label)
        b = resume_arrays(tmp_path / "ref" / "runs" / label)
        for key in (k for k in b if k.startswith("model.")):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-5, err_msg=key)
