"""Data-parallel training on an existing engine: `attnyolo train --distribute`.

- TensorFlow: `tf.distribute.MirroredStrategy` over the visible GPUs (or the CPU's logical
  devices). `MultiWorkerMirroredStrategy` (several machines, `TF_CONFIG`) is refused with a
  message: in Keras 3.15 `fit` first averages a sample batch across the replicas
  (`_maybe_symbolic_build`), which the collective strategy cannot do on eager values, so every
  multi-worker `fit` stops with "Attempt to convert a value (PerReplica...)"; tried here with two
  local workers.
- JAX: `keras.distribution.DataParallel` over `jax.devices()`; the batch is sharded along its
  first axis and the train step runs as one SPMD program.
- PyTorch: not offered here; Keras has no data-parallel distribution for it (run under `torchrun`
  with your own `DistributedDataParallel` set-up instead).

The batch size stays the global one (the original's meaning): each of N replicas gets
`batch_size / N` images, so it must divide evenly. The learning rate is the same as for one
device with that global batch.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import keras

__all__ = ["STRATEGIES", "distribution_scope", "resolve_strategy"]

STRATEGIES = ("mirrored", "data_parallel")


def resolve_strategy(setting: Any) -> str | None:
    """The `distribute` setting -> a strategy name for the running backend, or None.

    `false`/`null`: none; `true`/`"auto"`: `mirrored` on TensorFlow, `data_parallel` on JAX. A
    name is checked against the backend.
    """
    if setting in (None, False, "none"):
        return None
    backend = keras.backend.backend()
    if setting in (True, "auto"):
        if backend == "tensorflow":
            setting = "multi_worker" if _tf_config_has_cluster() else "mirrored"
        elif backend == "jax":
            return "data_parallel"
        else:
            raise ValueError(
                f"distribute: Keras offers no data-parallel training on the {backend} backend; "
                "use KERAS_BACKEND=tensorflow (MirroredStrategy) or jax (DataParallel)"
            )
    if setting == "multi_worker":
        raise ValueError(
            "distribute: MultiWorkerMirroredStrategy does not train in Keras 3.15 (fit averages a "
            "sample batch across replicas first, which the collective strategy cannot do on eager "
            "values); train on one machine (mirrored) or with JAX (data_parallel)"
        )
    if setting not in STRATEGIES:
        raise ValueError(f"distribute must be true, false or one of {STRATEGIES}, got {setting!r}")
    wanted = "jax" if setting == "data_parallel" else "tensorflow"
    if backend != wanted:
        raise ValueError(
            f"distribute={setting} needs the {wanted} backend, but Keras runs on {backend}"
        )
    return setting


def _tf_config_has_cluster() -> bool:
    text = os.environ.get("TF_CONFIG")
    if not text:
        return False
    try:
        return bool(json.loads(text).get("cluster"))
    except (ValueError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not a JSON object with a cluster: {error}") from None


@contextlib.contextmanager
def distribution_scope(strategy: str | None, batch_sizes: Sequence[int]) -> Iterator[int]:
    """Within it, models, optimizers and `fit` run data-parallel; yields the replica count.

    Raises:
        ValueError: one of `batch_sizes` does not divide evenly among the replicas, or one device
            only (nothing to distribute over).
    """
    if strategy is None:
        yield 1
        return
    if strategy == "data_parallel":
        import jax

        devices = jax.devices()
        _check_split(len(devices), batch_sizes, f"{len(devices)} JAX devices")
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
        return
    devices = _tf_devices()
    _check_split(len(devices), batch_sizes, f"{len(devices)} {strategy} replicas")
    with _mirrored_strategy(devices).scope():
        yield len(devices)


def _tf_devices() -> list[str]:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


# One MirroredStrategy for the whole process: a second one reuses the first one's collective-op
# keys, and its all-reduces then meet the first model's tensors.
_MIRRORED = None


def _mirrored_strategy(devices: list[str]):
    import tensorflow as tf

    global _MIRRORED
    if _MIRRORED is None:
        _MIRRORED = tf.distribute.MirroredStrategy(devices)
    return _MIRRORED


def _check_split(replicas: int, batch_sizes: Sequence[int], what: str) -> None:
    if replicas < 2:
        raise ValueError(
            f"distribute: only one device is visible ({what}); nothing to distribute over"
        )
    for batch_size in batch_sizes:
        if batch_size % replicas:
            raise ValueError(
                f"distribute: batch size {batch_size} does not split evenly over {what}; use a "
                f"multiple of {replicas}"
            )
