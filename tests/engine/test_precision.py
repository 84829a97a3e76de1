"""The `mixed_precision` setting: bfloat16 where the CPU has it (auto), the policy put back after
training, and XLA off for bfloat16."""

import keras
import pytest

from attnyolo.engine import precision
from attnyolo.engine.precision import compute_precision, cpu_has_bfloat16, dtype_policy
from attnyolo.engine.train import jit_compile_for, resolve_config


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    with_bf16 = tmp_path / "a"
    with_bf16.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16 avx2\n")
    with_amx = tmp_path / "b"
    with_amx.write_text("flags\t\t: fpu amx_tile amx_bf16\n")
    without = tmp_path / "c"
    without.write_text("flags : fpu sse avx2 avx512f\n")
    assert cpu_has_bfloat16(str(with_bf16)) and cpu_has_bfloat16(str(with_amx))
    assert not cpu_has_bfloat16(str(without))
    assert not cpu_has_bfloat16(str(tmp_path / "missing"))


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bfloat16_only_on_a_cpu_that_has_it(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: native)
    tensorflow = keras.backend.backend() == "tensorflow"
    assert compute_precision("auto") == ("bfloat16" if native and tensorflow else "float32")
    assert compute_precision(False) == "float32"
    assert compute_precision(True) == compute_precision("float16") == "float16"
    assert compute_precision("bfloat16") == "bfloat16"
    config = resolve_config(data="x", mixed_precision="bfloat16")
    assert jit_compile_for(config, None) is False  # XLA's bfloat16 convolutions are slower
    forced = resolve_config(data="x", mixed_precision="bfloat16", jit_compile=True)
    assert jit_compile_for(forced, None)


def test_a_bad_setting_is_refused():
    with pytest.raises(ValueError, match="mixed_precision must be one of"):
        resolve_config(data="x", mixed_precision="int8")
    with pytest.raises(ValueError, match="ema_every"):
        resolve_config(data="x", ema_every=0)


def test_the_policy_comes_back_after_the_block_even_on_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with dtype_policy("mixed_bfloat16"):
            assert keras.config.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError
    assert keras.config.dtype_policy().name == before
