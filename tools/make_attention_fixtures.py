"""Writes `tests/layers/fixtures/<type>_<C>.npz`: timm attention modules on a fixed random input.

Run with a Python that has torch and timm (the tests need neither):

    python tools/make_attention_fixtures.py [type ...]

Each file holds the NCHW input `x`, timm's output `y` (NCHW), every entry of the module's
state_dict under `param/<name>`, timm's parameter count `num_params`, `timm_version` and
`source = "timm <version> <class name>"`. Every parameter and buffer is randomised (seeded) and the
module runs in eval mode, so that no weight is left at an initial value that could hide a wrong
mapping.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import timm
import torch
from timm.layers import create_attn

OUT = Path(__file__).resolve().parents[1] / "tests" / "layers" / "fixtures"
# Our registry name -> timm's `create_attn` name: the module `create_attn(name, C)` builds.
TYPES = {"ese": "ese", "ceca": "ceca", "gc": "gc", "lcbam": "lcbam"}
CHANNELS = (16, 32)
BATCH, HEIGHT, WIDTH = 2, 7, 5


def make_fixture(timm_name: str, channels: int, seed: int) -> dict:
    torch.manual_seed(seed)
    module = create_attn(timm_name, channels).eval()
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if "running_var" in key:  # must stay positive
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:  # signed and small, so that gates do not saturate
                tensor.copy_(torch.randn_like(tensor) * 0.5)
        x = torch.randn(BATCH, channels, HEIGHT, WIDTH)
        y = module(x)
    version = timm.__version__
    params = {f"param/{key}": value.numpy() for key, value in module.state_dict().items()}
    return {
        **params,
        "x": x.numpy(),
        "y": y.numpy(),
        "num_params": np.int64(sum(p.numel() for p in module.parameters())),
        "timm_version": np.str_(version),
        "source": np.str_(f"timm {version} {type(module).__name__}"),
    }


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or TYPES:
        for channels in CHANNELS:
            seed = sorted(TYPES).index(name) * 1000 + channels
            path = OUT / f"{name}_{channels}.npz"
            np.savez_compressed(path, **make_fixture(TYPES[name], channels, seed))
            print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
