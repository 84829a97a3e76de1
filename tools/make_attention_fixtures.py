"""Writes `tests/layers/fixtures/<type>_<C>.npz`: each attention type's reference module (timm's,
another package's, or the authors' code from their repository) on a fixed random input.

Run with a Python that has torch (and timm, segmentation-models-pytorch for their types); the
tests need none of them:

    python tools/make_attention_fixtures.py [--repo owner/name=GIT_DIR ...] [type ...]

e.g. `--repo landskape-ai/triplet-attention=/work/.mirror/landskape-ai+triplet-attention/repo`.
The references are listed in `tools/attention_refs/*.py`. Each file holds the NCHW input `x`, the
module's output `y` (NCHW), every entry of its state_dict under `param/<name>`, its parameter
count `num_params`, `source` (the package and version, or the repository, commit and file, and
the class) and `options` (JSON: the keyword arguments our layer takes to match the reference).
Every parameter and buffer is randomised (seeded) and the module runs in eval mode, so that no
weight is left at an initial value that could hide a wrong mapping.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

OUT = ROOT.parent / "tests" / "layers" / "fixtures"
BATCH = 2  # the grid is the reference's `grid`, 7x5 unless it needs another


def references() -> dict:
    import attention_refs

    found = {}
    for info in pkgutil.iter_modules(attention_refs.__path__):
        if info.name == "common":
            continue
        module = importlib.import_module(f"attention_refs.{info.name}")
        for name, reference in module.REFERENCES.items():
            if name in found:
                raise SystemExit(f"{name} has two references ({info.name} and another)")
            found[name] = reference
    return found


def make_fixture(reference, channels: int, seed: int, repos: dict[str, Path]) -> dict:
    torch.manual_seed(seed)
    module, source = reference.build(channels, repos)
    module = module.eval()
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if "running_var" in key:  # must stay positive
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:  # signed and small, so that gates do not saturate
                tensor.copy_(torch.randn_like(tensor) * 0.5)
        x = torch.randn(BATCH, channels, *reference.grid)
        y = module(x)
    params = {f"param/{key}": value.numpy() for key, value in module.state_dict().items()}
    return {
        **params,
        "x": x.numpy(),
        "y": y.numpy(),
        "num_params": np.int64(sum(p.numel() for p in module.parameters())),
        "source": np.str_(f"{source} {type(module).__name__}"),
        "options": np.str_(json.dumps(reference.options, sort_keys=True)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("types", nargs="*", help="registry names (default: every reference)")
    parser.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH")
    args = parser.parse_args(argv)
    repos = {}
    for item in args.repo:
        name, _, path = item.partition("=")
        repos[name] = Path(path)
    every = references()
    unknown = sorted(set(args.types) - set(every))
    if unknown:
        raise SystemExit(f"no reference for {unknown}; known: {', '.join(sorted(every))}")
    names = sorted(every)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.types or names:
        reference = every[name]
        if reference.repo and reference.repo not in repos and not args.types:
            print(f"skipped {name}: pass --repo {reference.repo}=PATH")
            continue
        for channels in reference.channels:
            seed = zlib.crc32(name.encode()) % 100_000 * 1000 + channels  # stable per type
            path = OUT / f"{name}_{channels}.npz"
            np.savez_compressed(path, **make_fixture(reference, channels, seed, repos))
            print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
