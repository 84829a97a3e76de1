"""The authors' criss-cross attention (CCNet) (`tools/attention_refs/official_cc.py`)."""

from tests.layers.fixture_mappings import dense_from_conv


def _cc(layer, params):
    for name in ("query", "key", "value"):
        dense_from_conv(getattr(layer, name), params, f"{name}_conv")
    layer.gamma.assign(params["gamma"])


MAPPINGS = {"cc": (_cc, "CrissCrossAttention")}
