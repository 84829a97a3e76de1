"""A full disk while a checkpoint, a report or an export is written: the files there before
stay whole, and the job stops with one clear line. The disk is "filled" by a patched writer:
the chosen file's temporary copy gets half its bytes, then the write fails with ENOSPC."""

import contextlib
import dataclasses
import errno
import json
from pathlib import Path

import numpy as np
import pytest

import attnyolo.utils as utils
from attnyolo.data.synthetic import generate_shapes

NO_SPACE = "No space left on device"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", num_images=24, seed=4)


def fill_disk_at(monkeypatch, prefix: str, nth: int = 1) -> list:
    """From the `nth` write of a file whose name starts with `prefix`, the disk is full."""
    import attnyolo.engine.evaluate as evaluate
    import attnyolo.engine.train as train_module
    import attnyolo.models.saving as saving

    real = utils.atomic_path
    seen = []

    @contextlib.contextmanager
    def atomic_path(path):
        with real(path) as tmp:
            yield tmp
            if Path(path).name.startswith(prefix):
                seen.append(Path(path))
                if len(seen) >= nth:
                    data = tmp.read_bytes()
                    tmp.write_bytes(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, NO_SPACE)

    for module in (utils, saving, train_module, evaluate):
        monkeypatch.setattr(module, "atomic_path", atomic_path, raising=False)
    return seen


def test_a_full_disk_at_a_checkpoint_stops_training_and_the_run_resumes(
    shapes, tmp_path, monkeypatch, capsys
):
    from attnyolo.cli import main
    from attnyolo.engine.train import RunState, read_resume, train

    run = tmp_path / "runs" / "full"
    fill_disk_at(monkeypatch, "resume", nth=2)  # epoch 2's commit point
    with pytest.raises(SystemExit) as stop:
        main(
            [
                "train", "--data", str(shapes), "--epochs", "2", "--input-size", "64",
                "--batch-size", "8", "--output", str(run.parent), "--name", run.name,
                "--set", "train_split=train", "--set", "val_split=null", "--set", "workers=1",
                "--set", "jit_compile=false", "--set", "eval_period=0",
            ]
        )  # fmt: skip
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    line = lines[0]
    assert (
        f"{run / 'resume.npz'}: not written ({NO_SPACE}); the file there before is unchanged"
        in line
    )
    assert "resumes from epoch 1" in line and f"attnyolo train --resume {run}" in line
    assert "Traceback" not in line
    # Epoch 1's files are whole; nothing half-written is left.
    assert RunState.load(run).epoch == 1 and read_resume(run, "model")
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()  # room again
    train(resume=run, verbose=0)
    assert json.loads((run / "state.json").read_text())["epoch"] == 2


def test_a_full_disk_while_writing_a_report_keeps_the_earlier_one(shapes, tmp_path, monkeypatch):
    from attnyolo.data.datasets import load_dataset
    from attnyolo.engine.evaluate import evaluate, write_report
    from attnyolo.utils import WriteError

    dataset = load_dataset(shapes, "test")
    from attnyolo.inference.decoder import Detections

    empty = [
        Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int))
        for _ in dataset.records
    ]
    first = evaluate(dataset, empty)
    write_report(first, dataset, tmp_path / "evaluation", plots=False)
    before = (tmp_path / "evaluation" / "report.json").read_bytes()
    fill_disk_at(monkeypatch, "report.json")
    with pytest.raises(WriteError, match=NO_SPACE) as error:
        write_report(first, dataset, tmp_path / "evaluation", plots=False)
    assert "the file there before is unchanged" in str(error.value)
    assert str(tmp_path / "evaluation" / "report.json") in str(error.value)
    assert (tmp_path / "evaluation" / "report.json").read_bytes() == before
    assert not [p for p in (tmp_path / "evaluation").iterdir() if ".tmp" in p.name]


def test_a_full_disk_during_an_export_keeps_the_earlier_files(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    from attnyolo.engine import export
    from attnyolo.models import YOLOv4Tiny

    model = YOLOv4Tiny(["a", "b"], input_size=64)
    target = tmp_path / "m.weights"
    first = export.export_model(model, target, "darknet")
    before = {p.name: p.read_bytes() for p in first.paths}
    real = export.FORMATS["darknet"]

    def write_then_fill(*args, **kwargs):
        written = real.write(*args, **kwargs)
        data = written[0].read_bytes()
        written[0].write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setitem(export.FORMATS, "darknet", dataclasses.replace(real, write=write_then_fill))
    with pytest.raises(export.ExportError, match=f"export failed \\({NO_SPACE}\\)") as error:
        export.export_model(model, target, "darknet")
    assert str(target) in str(error.value) and "unchanged" in str(error.value)
    assert {p.name: p.read_bytes() for p in first.paths} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)  # no staging left
