"""Our attention layers equal their reference code (timm's modules, other packages', the authors'
released code), on fixtures that the references wrote.

The fixtures (`fixtures/<type>_<C>.npz`) come from `tools/make_attention_fixtures.py`, run with
torch and the reference code; this test needs neither. Each holds the reference's NCHW input and
output, its state_dict (randomised, eval mode) under `param/<name>`, its parameter count, the
source (package and version, or repository and commit) and the options our layer takes to match.
The state_dict is mapped onto our layer's weights by one function per type, in
`fixture_mappings/`.
"""

import importlib
import json
import pkgutil
from pathlib import Path

import keras
import numpy as np
import pytest

from attnyolo.layers import attention_names, get_attention
from tests.layers import fixture_mappings

FIXTURES = Path(__file__).parent / "fixtures"
FILES = sorted(FIXTURES.glob("*.npz"))


def _mappings():
    found = {}
    for info in pkgutil.iter_modules(fixture_mappings.__path__):
        module = importlib.import_module(f"tests.layers.fixture_mappings.{info.name}")
        assert not set(found) & set(module.MAPPINGS), f"{info.name} maps a type twice"
        found.update(module.MAPPINGS)
    return found


MAPPINGS = _mappings()

# Every registered type has a reference fixture; a type added without one fails below.
NO_FIXTURE: set[str] = set()


def _load(path):
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def _fixture_name(path):
    """`cbam_16.npz` -> `cbam`; `cbam@original_32.npz` -> `cbam@original` (a second reference
    for the type `cbam`)."""
    return path.stem.rsplit("_", 1)[0]


def test_every_mapping_has_fixtures():
    names = {_fixture_name(path) for path in FILES}
    assert names == set(MAPPINGS)


def test_every_registered_type_has_a_reference_or_a_reason():
    covered = {name.split("@")[0] for name in MAPPINGS}
    missing = sorted(set(attention_names()) - covered - NO_FIXTURE)
    assert not missing, f"attention types without a reference fixture: {missing}"


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_equals_reference(path, data_format):
    fixture = _load(path)
    name = _fixture_name(path)
    assign_weights, class_name = MAPPINGS[name]
    assert str(fixture["source"]).endswith(f" {class_name}"), fixture["source"]
    options = json.loads(str(fixture["options"]))
    params = {
        key.removeprefix("param/"): value
        for key, value in fixture.items()
        if key.startswith("param/")
    }
    x, expected = fixture["x"], fixture["y"]  # NCHW
    if data_format == "channels_last":
        x, expected = np.transpose(x, (0, 2, 3, 1)), np.transpose(expected, (0, 2, 3, 1))

    layer = get_attention(name.split("@")[0], data_format=data_format, **options)
    layer.build((None, *x.shape[1:]))
    # The references count parameters, not buffers such as batch norm's running statistics.
    trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert trainable == int(fixture["num_params"])
    assign_weights(layer, params)
    got = keras.ops.convert_to_numpy(layer(x))
    # 1e-5, or 1e-6 of the output's scale where that is larger: float32 rounding alone (about
    # 8 ulp of the largest value) moves LSK's output (an unbounded gate, |y| up to 100) by up to
    # 8e-5 from its float64 value, in torch as in Keras (in float64 the two agree to 1e-13).
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=max(1e-5, 1e-6 * scale))
