"""The authors' SA-Net, LSKNet, CBAM, ECA-Net and Coordinate Attention modules, and timm's SE
(`tools/attention_refs/official_c.py`)."""

import numpy as np

from tests.layers.fixture_mappings import batch_norm, conv1d_kernel, conv2d_kernel, dense_from_conv


def _vector(variable, params, key):
    """A (1, n, 1, 1) or (n,) parameter -> an (n,) weight."""
    variable.assign(params[key].reshape(-1))


def _depthwise(conv, params, prefix):
    """Depthwise Conv2d weight (C, 1, kh, kw) -> DepthwiseConv2D kernel (kh, kw, C, 1)."""
    conv.kernel.assign(np.transpose(params[f"{prefix}.weight"], (2, 3, 0, 1)))
    conv.bias.assign(params[f"{prefix}.bias"])


def _linear(dense, params, prefix):
    """Linear weight (out, in) -> Dense kernel (in, out)."""
    dense.kernel.assign(params[f"{prefix}.weight"].T)
    dense.bias.assign(params[f"{prefix}.bias"])


def _sa(layer, params):
    for ours, theirs in (
        ("cweight", "cweight"),
        ("cbias", "cbias"),
        ("sweight", "sweight"),
        ("sbias", "sbias"),
        ("gn_gamma", "gn.weight"),
        ("gn_beta", "gn.bias"),
    ):
        _vector(getattr(layer, ours), params, theirs)


def _lsk(layer, params):
    _depthwise(layer.conv0, params, "conv0")
    _depthwise(layer.conv_spatial, params, "conv_spatial")
    dense_from_conv(layer.conv1, params, "conv1")
    dense_from_conv(layer.conv2, params, "conv2")
    conv2d_kernel(layer.conv_squeeze, params, "conv_squeeze")
    dense_from_conv(layer.conv, params, "conv")


def _cbam_channel(layer, params, prefix=""):
    # ChannelGate.mlp: Flatten, Linear, ReLU, Linear.
    _linear(layer.mlp_hidden, params, f"{prefix}mlp.1")
    _linear(layer.mlp_out, params, f"{prefix}mlp.3")


def _cbam_spatial(layer, params, prefix=""):
    # The official ChannelPool stacks (max, mean); ours stacks (mean, max): the kernel's input
    # channel axis is reversed.
    kernel = np.transpose(params[f"{prefix}spatial.conv.weight"], (2, 3, 1, 0))
    layer.conv.kernel.assign(kernel[:, :, ::-1, :])
    batch_norm(layer.bn, params, f"{prefix}spatial.bn")


def _cbam(layer, params):
    _cbam_channel(layer.channel_attention, params, "ChannelGate.")
    _cbam_spatial(layer.spatial_attention, params, "SpatialGate.")


def _eca(layer, params):
    conv1d_kernel(layer.conv, params, "conv")


def _ca(layer, params):
    dense_from_conv(layer.conv1, params, "conv1")
    batch_norm(layer.bn1, params, "bn1")
    dense_from_conv(layer.conv_h, params, "conv_h")
    dense_from_conv(layer.conv_w, params, "conv_w")


def _se(layer, params):
    dense_from_conv(layer.squeeze, params, "fc1")
    dense_from_conv(layer.excite, params, "fc2")


MAPPINGS = {
    "sa": (_sa, "sa_layer"),
    "lsk": (_lsk, "LSKblock"),
    "cbam": (_cbam, "CBAM"),
    "cbam_channel": (_cbam_channel, "ChannelGate"),
    "cbam_spatial": (_cbam_spatial, "SpatialGate"),
    "eca": (_eca, "eca_layer"),
    "ca": (_ca, "CoordAtt"),
    "se": (_se, "SEModule"),
}
