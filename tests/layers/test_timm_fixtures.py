"""Our ports of timm's attention modules (and of segmentation_models_pytorch's scSE) equal the
originals, on fixtures that the originals wrote.

The fixtures (`fixtures/<type>_<C>.npz`) come from `tools/make_attention_fixtures.py`, run with
torch, timm and smp; this test needs none. Each holds the reference's NCHW input and output, its
state_dict (randomised, eval mode) under `param/<name>`, and its parameter count. The
state_dict is mapped onto our layer's weights by one function per type below.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from attnyolo.layers import get_attention

FIXTURES = Path(__file__).parent / "fixtures"


def _dense_from_conv(dense, params, prefix):
    # Conv2d(in, out, 1) weight (out, in, 1, 1) -> Dense kernel (in, out).
    dense.kernel.assign(params[f"{prefix}.weight"][:, :, 0, 0].T)
    dense.bias.assign(params[f"{prefix}.bias"])


def _ese(layer, params):
    _dense_from_conv(layer.fc, params, "fc")


def _ceca(layer, params):
    # Conv1d(1, 1, k) weight (out, in, k) -> Conv1D kernel (k, in, out).
    layer.conv.kernel.assign(np.transpose(params["conv.weight"], (2, 1, 0)))


def _gc(layer, params):
    _dense_from_conv(layer.conv_attn, params, "conv_attn")
    _dense_from_conv(layer.fc1, params, "mlp_scale.fc1")
    layer.norm.gamma.assign(params["mlp_scale.norm.weight"])
    layer.norm.beta.assign(params["mlp_scale.norm.bias"])
    _dense_from_conv(layer.fc2, params, "mlp_scale.fc2")


def _lcbam(layer, params):
    # Conv2d 1x1 without bias (out, in, 1, 1) -> Dense kernel (in, out).
    layer.fc1.kernel.assign(params["channel.fc1.weight"][:, :, 0, 0].T)
    layer.fc2.kernel.assign(params["channel.fc2.weight"][:, :, 0, 0].T)
    # Conv2d(1, 1, k) weight (out, in, kh, kw) -> Conv2D kernel (kh, kw, in, out).
    layer.conv.kernel.assign(np.transpose(params["spatial.conv.conv.weight"], (2, 3, 1, 0)))
    layer.bn.gamma.assign(params["spatial.conv.bn.weight"])
    layer.bn.beta.assign(params["spatial.conv.bn.bias"])
    layer.bn.moving_mean.assign(params["spatial.conv.bn.running_mean"])
    layer.bn.moving_variance.assign(params["spatial.conv.bn.running_var"])


def _scse(layer, params):
    _dense_from_conv(layer.fc1, params, "cSE.1")
    _dense_from_conv(layer.fc2, params, "cSE.3")
    _dense_from_conv(layer.spatial, params, "sSE.0")


# Registry name -> (maps the reference's state_dict onto our built layer, its package and class).
MAPPINGS = {
    "ese": (_ese, "timm", "EffectiveSEModule"),
    "ceca": (_ceca, "timm", "CecaModule"),
    "gc": (_gc, "timm", "GlobalContext"),
    "lcbam": (_lcbam, "timm", "LightCbamModule"),
    "scse": (_scse, "segmentation_models_pytorch", "SCSEModule"),
}

FILES = sorted(FIXTURES.glob("*.npz"))


def _load(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_every_mapping_has_fixtures():
    names = {path.stem.rsplit("_", 1)[0] for path in FILES}
    assert names == set(MAPPINGS)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_equals_reference(path, data_format):
    fixture = _load(path)
    name = path.stem.rsplit("_", 1)[0]
    assign_weights, package, class_name = MAPPINGS[name]
    version = fixture["timm_version" if package == "timm" else "version"]
    assert str(fixture["source"]) == f"{package} {version} {class_name}"
    params = {
        key.removeprefix("param/"): value
        for key, value in fixture.items()
        if key.startswith("param/")
    }
    x, expected = fixture["x"], fixture["y"]  # NCHW
    if data_format == "channels_last":
        x, expected = np.transpose(x, (0, 2, 3, 1)), np.transpose(expected, (0, 2, 3, 1))

    layer = get_attention(name, data_format=data_format)
    layer.build((None, *x.shape[1:]))
    # The references count parameters, not buffers such as batch norm's running statistics.
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert trainable == int(fixture["num_params"])
    assign_weights(layer, params)
    got = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
