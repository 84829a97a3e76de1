"""Training faults that must stop with a clear error and change nothing: a class list that
changed between a checkpoint and a resume, a data set that filtering leaves empty."""

import hashlib
import shutil
import warnings

import pytest

from attnyolo.data.synthetic import generate_shapes
from attnyolo.engine.train import resolve_config, train


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", num_images=24, seed=2)


def small(shapes, output, **extra):
    return resolve_config(
        data=str(shapes),
        input_size=64,
        epochs=1,
        batch_size=8,
        optimizer="adam",
        eval_period=0,
        train_split="train",
        val_split=None,
        workers=1,
        jit_compile=False,
        output=str(output),
        **extra,
    )


def digest(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_resuming_with_other_classes_is_refused_and_changes_nothing(shapes, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    run = train(small(data, tmp_path / "runs", name="run", classes=str(data / "classes.txt")))
    before = digest(run)
    names = (data / "classes.txt").read_text().split()
    # The same number of classes, two swapped: the weights would fit and mean the wrong thing.
    names[0], names[1] = names[1], names[0]
    (data / "classes.txt").write_text("\n".join(names) + "\n")
    with pytest.raises(ValueError, match=r"trained on the classes .* its data now give") as error:
        train(resume=run)
    assert str(run) in str(error.value) and "nothing was changed" in str(error.value)
    assert digest(run) == before


def test_a_data_set_that_filtering_empties_stops_before_the_run_folder(shapes, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(shapes, data)
    for image in (data / "JPEGImages").iterdir():
        image.unlink()  # every annotation now names a missing image: all are skipped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(
            ValueError, match=r"\(train\): empty data set, no usable image \(missing image: \d+\)"
        ) as error:
            train(small(data, tmp_path / "runs", name="empty"))
    assert str(data) in str(error.value)
    assert not (tmp_path / "runs" / "empty").exists()
