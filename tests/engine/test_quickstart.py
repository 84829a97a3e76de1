"""`attnyolo quickstart` end to end: a tiny run in the default suite (everything written, an
interrupted run resumes), and the real one, slow, held to its target mAP."""

import json

import pytest

from attnyolo.cli import main
from attnyolo.engine.quickstart import quickstart

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_tiny_quickstart_writes_everything(tmp_path, capsys):
    main(["quickstart", "-o", str(tmp_path), "--images", "60", "--epochs", "1"])
    out = capsys.readouterr().out
    assert "quickstart finished" in out and "test mAP@0.5" in out
    assert (tmp_path / "data" / "shapes" / "VOC2007" / "classes.txt").is_file()
    assert (tmp_path / "train" / "weights" / "last.keras").is_file()
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert report["images"] == 6  # the 10 % test split of 60 images
    predictions = sorted(p.name for p in (tmp_path / "predictions").glob("*.jpg"))
    assert len(predictions) == 6
    # A second call finds the data and the finished run and only re-evaluates.
    again = quickstart(tmp_path, images=60, epochs=1)
    assert again["test_map50"] == pytest.approx(report["voc"]["map"], abs=1e-9)


@pytest.mark.slow
def test_quickstart_reaches_its_target(tmp_path):
    """The README's main job as a new user runs it; about 10 minutes on 2 CPU cores."""
    result = quickstart(tmp_path)
    print(f"quickstart: {result['seconds'] / 60:.1f} min, test mAP@0.5 {result['test_map50']:.3f}")
    assert result["test_map50"] >= 0.5
