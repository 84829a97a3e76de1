"""Writes `tests/layers/fixtures/<type>_<C>.npz`: reference attention modules (timm's, and
segmentation_models_pytorch's scSE) on a fixed random input.

Run with a Python that has torch, timm and segmentation-models-pytorch (the tests need none):

    python tools/make_attention_fixtures.py [type ...]

Each file holds the NCHW input `x`, the module's output `y` (NCHW), every entry of its
state_dict under `param/<name>`, its parameter count `num_params`, the package's version
(`timm_version` for timm's modules, `version` for others) and
`source = "<package> <version> <class name>"`. Every parameter and buffer is randomised (seeded)
and the module runs in eval mode, so that no weight is left at an initial value that could hide a
wrong mapping.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import timm
import torch
from segmentation_models_pytorch.base.modules import SCSEModule
from timm.layers import create_attn

OUT = Path(__file__).resolve().parents[1] / "tests" / "layers" / "fixtures"
# Our registry name -> timm's `create_attn` name: the module `create_attn(name, C)` builds.
TYPES = {"ese": "ese", "ceca": "ceca", "gc": "gc", "lcbam": "lcbam"}
# Our registry name -> (package, its version, the module for C channels) for other packages.
OTHER_TYPES = {
    "scse": ("segmentation_models_pytorch", smp.__version__, lambda c: SCSEModule(c, reduction=16))
}
CHANNELS = (16, 32)
BATCH, HEIGHT, WIDTH = 2, 7, 5


def make_fixture(name: str, channels: int, seed: int) -> dict:
    torch.manual_seed(seed)
    if name in TYPES:
        package, version = "timm", timm.__version__
        module = create_attn(TYPES[name], channels).eval()
    else:
        package, version, build = OTHER_TYPES[name]
        module = build(channels).eval()
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
    params = {f"param/{key}": value.numpy() for key, value in module.state_dict().items()}
    return {
        **params,
        "x": x.numpy(),
        "y": y.numpy(),
        "num_params": np.int64(sum(p.numel() for p in module.parameters())),
        ("timm_version" if package == "timm" else "version"): np.str_(version),
        "source": np.str_(f"{package} {version} {type(module).__name__}"),
    }


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    every = sorted({**TYPES, **OTHER_TYPES})
    for name in names or every:
        for channels in CHANNELS:
            seed = every.index(name) * 1000 + channels
            path = OUT / f"{name}_{channels}.npz"
            np.savez_compressed(path, **make_fixture(name, channels, seed))
            print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
