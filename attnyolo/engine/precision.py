"""Which dtype policy a training run computes in: the `mixed_precision` setting resolved for the
machine and the backend it runs on.

- `false`: float32 (the original's);
- `true` or `float16`: Keras' `mixed_float16` (loss scaling comes with it), for GPUs;
- `bfloat16`: Keras' `mixed_bfloat16`: the convolutions in bfloat16, the variables, batch-norm
  statistics and the heads (`YOLOv4Tiny` keeps them float32) and the loss in float32;
- `auto`: `bfloat16` where the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16, read
  from /proc/cpuinfo at run time), the backend is TensorFlow (oneDNN's bfloat16 kernels; XLA's
  CPU convolutions gain nothing from it) and no GPU is visible; float32 elsewhere.

Measured with `bench/profile_training_step.py` (AMD EPYC with AVX512_BF16, 2 cores, 320x320,
batch 8, `--recipe fast`): the Keras train step took 431 ms in mixed bfloat16 without XLA,
613 ms in float32 without XLA, 839 ms in float32 with XLA; with XLA, bfloat16 was slower still
(1396 ms). So a bfloat16 run is compiled without XLA (`jit_compile: auto`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

MIXED_PRECISION = (False, True, "float16", "bfloat16", "auto")
_POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@functools.cache
def cpu_has_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has native bfloat16 arithmetic (the avx512_bf16 or amx_bf16 flag)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def _gpu_visible() -> bool:
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def compute_precision(setting: Any) -> str:
    """The `mixed_precision` setting -> "float32", "float16" or "bfloat16" for this machine."""
    if setting is False or setting is None:
        return "float32"
    if setting is True or setting == "float16":
        return "float16"
    if setting == "bfloat16":
        return "bfloat16"
    if setting == "auto":
        native = keras.backend.backend() == "tensorflow" and cpu_has_bfloat16()
        return "bfloat16" if native and not _gpu_visible() else "float32"
    raise ValueError(
        f"mixed_precision is one of false, true (float16), float16, bfloat16, auto; got {setting!r}"
    )


def policy_name(precision: str) -> str:
    """Keras' dtype policy for a `compute_precision` result."""
    return _POLICIES[precision]


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Sets Keras' global dtype policy inside, and puts back the one before after."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)
