"""timm's modules and segmentation_models_pytorch's scSE (`tools/attention_refs/timm_refs.py`)."""

from tests.layers.fixture_mappings import batch_norm, conv1d_kernel, conv2d_kernel, dense_from_conv


def _ese(layer, params):
    dense_from_conv(layer.fc, params, "fc")


def _ceca(layer, params):
    conv1d_kernel(layer.conv, params, "conv")


def _gc(layer, params):
    dense_from_conv(layer.conv_attn, params, "conv_attn")
    dense_from_conv(layer.fc1, params, "mlp_scale.fc1")
    layer.norm.gamma.assign(params["mlp_scale.norm.weight"])
    layer.norm.beta.assign(params["mlp_scale.norm.bias"])
    dense_from_conv(layer.fc2, params, "mlp_scale.fc2")


def _gca(layer, params):
    dense_from_conv(layer.conv_attn, params, "conv_attn")
    dense_from_conv(layer.fc1, params, "mlp_add.fc1")
    layer.norm.gamma.assign(params["mlp_add.norm.weight"])
    layer.norm.beta.assign(params["mlp_add.norm.bias"])
    dense_from_conv(layer.fc2, params, "mlp_add.fc2")


def _ge(layer, params):
    dense_from_conv(layer.fc1, params, "mlp.fc1")
    dense_from_conv(layer.fc2, params, "mlp.fc2")


def _nl(layer, params):
    for ours, theirs in (("theta", "t"), ("phi", "p"), ("g", "g"), ("z", "z")):
        dense_from_conv(getattr(layer, ours), params, theirs)
    batch_norm(layer.bn, params, "norm")


def _lcbam(layer, params):
    dense_from_conv(layer.fc1, params, "channel.fc1", bias=False)
    dense_from_conv(layer.fc2, params, "channel.fc2", bias=False)
    conv2d_kernel(layer.conv, params, "spatial.conv.conv", bias=False)
    batch_norm(layer.bn, params, "spatial.conv.bn")


def _scse(layer, params):
    dense_from_conv(layer.fc1, params, "cSE.1")
    dense_from_conv(layer.fc2, params, "cSE.3")
    dense_from_conv(layer.spatial, params, "sSE.0")


MAPPINGS = {
    "ese": (_ese, "EffectiveSEModule"),
    "ceca": (_ceca, "CecaModule"),
    "gc": (_gc, "GlobalContext"),
    "lcbam": (_lcbam, "LightCbamModule"),
    "ge": (_ge, "GatherExcite"),
    "gca": (_gca, "GlobalContext"),
    "nl": (_nl, "NonLocalAttn"),
    "scse": (_scse, "SCSEModule"),
}
