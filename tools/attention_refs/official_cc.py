"""The authors' criss-cross attention (CCNet), imported from their repository (git directory
given with --repo)."""

from __future__ import annotations

import functools

from .common import Reference, load_repo_module

CCNET = "speedinghzl/CCNet"


def _on_cpu(function):
    """`function` with `torch.Tensor.cuda` returning the tensor itself while it runs.

    The authors' `INF(B, H, W)` builds the `-inf` diagonal with `.cuda()`, which fails on a
    machine without a GPU (where the fixtures are written); on a GPU the tensor would be moved
    to the device the rest of the module is on, so returning it unchanged on the CPU computes
    the same values. Patched only around each call of `INF`, in the fixture process only; the
    reference file is imported unchanged.
    """
    import torch

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self
        try:
            return function(*args, **kwargs)
        finally:
            torch.Tensor.cuda = cuda

    return wrapper


def _cc(channels, repos):
    module, source = load_repo_module(repos, CCNET, "cc_attention/functions.py")
    layer = module.CrissCrossAttention(channels)
    layer.INF = _on_cpu(layer.INF)  # the instance's own attribute, which forward calls
    return layer, source


REFERENCES = {
    # in_dim // 8 query and key channels: 2 and 4 on 16 and 32 channels.
    "cc": Reference(_cc, repo=CCNET),
}
