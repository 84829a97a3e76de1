"""Writes fixtures of the yolov4-tiny-keras scripts' own attention blocks (bubbliiiing,
`nets/attention.py`), run on random weights: `ca_original_<C>.npz` (their `ca_block`) and, for
the defaults of `se`, `cbam` and `eca` (which follow the scripts), `se@original_<C>.npz`,
`cbam@original_<C>.npz`, `eca@original_<C>.npz`.

The scripts are Keras 2 code (`from keras import backend as K`, `input._keras_shape`); they run
here under tf_keras (the Keras 2 that TensorFlow 2.21 still ships as a package) with two
stand-ins, set in this process only: `keras` names tf_keras, and a Keras tensor answers
`_keras_shape` with its static shape. The file is read from the repository given on the command
line and imported from a temporary folder (never copied into this project):

    PYTHONPATH=/path/to/tf_keras python tools/make_original_fixtures.py \\
        --repo bubbliiiing/yolov4-tiny-keras=/work/.mirror/bubbliiiing+yolov4-tiny-keras/repo

(`pip install --no-deps --target /path/to/tf_keras tf_keras==2.21.0` gives the package without
touching the environment's Keras 3.) Each file holds the NCHW input `x` and output `y`, the
block's weights under `param/<layer name>/<weight>`, its trainable parameter count, `source`
(repository, commit, file and function) and `options` (our layer's matching arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

OUT = ROOT.parent / "tests" / "layers" / "fixtures"
REPO = "bubbliiiing/yolov4-tiny-keras"
BATCH, HEIGHT, WIDTH = 2, 7, 5
CHANNELS = (32, 48)


def _keras2():
    """tf_keras as `keras`, with `_keras_shape` on its symbolic tensors."""
    import tf_keras
    from tf_keras.src.engine.keras_tensor import KerasTensor

    sys.modules["keras"] = tf_keras
    sys.modules["keras.layers"] = tf_keras.layers
    sys.modules["keras.backend"] = tf_keras.backend
    KerasTensor._keras_shape = property(lambda self: tuple(self.shape))
    return tf_keras


# Fixture name (`<type>` or `<type>@original`) -> the scripts' function.
BLOCKS = {
    "ca_original": "ca_block",
    "se@original": "se_block",
    "cbam@original": "cbam_block",
    "eca@original": "eca_block",
}


def make_fixture(attention, tf_keras, block: str, channels: int, seed: int, source: str) -> dict:
    rng = np.random.default_rng(seed)
    inputs = tf_keras.Input((HEIGHT, WIDTH, channels))
    model = tf_keras.Model(inputs, getattr(attention, block)(inputs, name="0"))
    for weight in model.weights:
        if "moving_variance" in weight.name:  # must stay positive
            value = rng.uniform(0.5, 1.5, weight.shape)
        else:  # signed and small, so that gates do not saturate
            value = rng.normal(0, 0.5, weight.shape)
        weight.assign(value.astype("float32"))
    x = rng.normal(size=(BATCH, HEIGHT, WIDTH, channels)).astype("float32")
    y = model(x, training=False).numpy()
    params = {
        f"param/{w.name.split(':')[0]}": w.numpy() for w in model.weights
    }  # e.g. param/ca_block_conv1_0/kernel
    return {
        **params,
        "x": x.transpose(0, 3, 1, 2),
        "y": y.transpose(0, 3, 1, 2),
        "num_params": np.int64(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "source": np.str_(f"{source} {block}"),
        "options": np.str_(json.dumps({})),
    }


def main(argv: list[str] | None = None) -> None:
    from attention_refs.common import load_repo_module

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, metavar=f"{REPO}=PATH")
    args = parser.parse_args(argv)
    name, _, path = args.repo.partition("=")
    if name != REPO:
        raise SystemExit(f"--repo takes {REPO}=PATH")
    tf_keras = _keras2()
    attention, source = load_repo_module({REPO: Path(path)}, REPO, "nets/attention.py")
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (fixture_name, block) in enumerate(BLOCKS.items()):
        for channels in CHANNELS:
            seed = 1000 * i + channels
            fixture = make_fixture(attention, tf_keras, block, channels, seed, source)
            out = OUT / f"{fixture_name}_{channels}.npz"
            np.savez_compressed(out, **fixture)
            print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
