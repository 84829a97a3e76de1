"""How each reference module's state_dict maps onto our layer's weights, one module per source.

Each module defines `MAPPINGS: dict[str, tuple[Callable[[layer, params], None], str]]`: our
registry name -> (assigns the reference's `params` (state_dict, NumPy) to our built layer, the
reference's class name). `tests/layers/test_reference_fixtures.py` collects them all.
"""

import numpy as np


def dense_from_conv(dense, params, prefix, bias=True):
    """Conv2d(in, out, 1) weight (out, in, 1, 1) -> Dense kernel (in, out)."""
    dense.kernel.assign(params[f"{prefix}.weight"][:, :, 0, 0].T)
    if bias:
        dense.bias.assign(params[f"{prefix}.bias"])


def conv2d_kernel(conv, params, prefix, bias=True):
    """Conv2d weight (out, in, kh, kw) -> Conv2D kernel (kh, kw, in, out)."""
    conv.kernel.assign(np.transpose(params[f"{prefix}.weight"], (2, 3, 1, 0)))
    if bias:
        conv.bias.assign(params[f"{prefix}.bias"])


def conv1d_kernel(conv, params, prefix, bias=False):
    """Conv1d weight (out, in, k) -> Conv1D kernel (k, in, out)."""
    conv.kernel.assign(np.transpose(params[f"{prefix}.weight"], (2, 1, 0)))
    if bias:
        conv.bias.assign(params[f"{prefix}.bias"])


def batch_norm(bn, params, prefix):
    """BatchNorm2d / BatchNorm1d weight, bias and running statistics."""
    bn.gamma.assign(params[f"{prefix}.weight"])
    bn.beta.assign(params[f"{prefix}.bias"])
    bn.moving_mean.assign(params[f"{prefix}.running_mean"])
    bn.moving_variance.assign(params[f"{prefix}.running_var"])
