"""`--distribute`: data-parallel training over two simulated CPU devices, on TensorFlow
(MirroredStrategy over two logical devices) and JAX (DataParallel with
`--xla_force_host_platform_device_count=2`), each in a fresh process; see distributed_check.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from attnyolo.data.synthetic import generate_shapes
from attnyolo.engine.distribute import distribution_scope, resolve_strategy

CHECK = Path(__file__).with_name("distributed_check.py")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return generate_shapes(tmp_path_factory.mktemp("data") / "shapes", num_images=24, seed=5)


def run_check(shapes, tmp_path, backend, *args, env=None):
    pytest.importorskip(backend)
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, str(CHECK), str(shapes), str(tmp_path), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_result(result, strategy):
    assert result["strategy"] == strategy and result["replicas"] == 2
    assert result["moved"] > 1e-4  # the step changed the weights...
    # ...and exactly as one device does (float32 sums in another order).
    assert result["difference"] < 1e-5 * max(1.0, result["moved"]) + 1e-6, result
    assert abs(result["spread_loss"] - result["single_loss"]) < 1e-4 * result["single_loss"]
    assert "batch size 3 does not split evenly over 2" in result["uneven"]
    assert result["epochs"] == 1 and result["checkpoint"]
    row = result["history"][0]
    assert row["loss"] > 0 and "val_map50" in row


def test_tensorflow_mirrored_strategy_on_two_logical_cpus(shapes, tmp_path):
    check_result(run_check(shapes, tmp_path, "tensorflow"), "mirrored")


def test_jax_data_parallel_on_two_host_devices(shapes, tmp_path):
    result = run_check(
        shapes,
        tmp_path,
        "jax",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    check_result(result, "data_parallel")


def test_setting_mistakes_fail_at_once():
    backend = keras.backend.backend()
    assert resolve_strategy(False) is None and resolve_strategy(None) is None
    with pytest.raises(ValueError, match="must be true, false or one of"):
        resolve_strategy("horovod")
    other = "data_parallel" if backend != "jax" else "mirrored"
    with pytest.raises(ValueError, match=f"distribute={other} needs the"):
        resolve_strategy(other)
    if backend == "tensorflow":
        with pytest.raises(ValueError, match="MultiWorkerMirroredStrategy.*Keras"):
            resolve_strategy("multi_worker")
    if backend == "torch":
        with pytest.raises(ValueError, match="no data-parallel training on the torch backend"):
            resolve_strategy(True)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow strategies")
def test_one_device_is_refused():
    import tensorflow as tf

    if len(tf.config.list_logical_devices("CPU")) > 1:
        pytest.skip("this process already has several logical CPUs")
    with pytest.raises(ValueError, match="only one device is visible"):
        with distribution_scope("mirrored", [8]):
            pass
