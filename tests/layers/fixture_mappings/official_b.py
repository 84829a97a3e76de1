"""The authors' Triplet Attention, BAM, PSA (both layouts), SimAM and SGE
(`tools/attention_refs/official_b.py`)."""

from tests.layers.fixture_mappings import batch_norm, conv2d_kernel, dense_from_conv


def _triplet(layer, params):
    for branch in ("cw", "hc", "hw"):
        conv2d_kernel(getattr(layer, f"{branch}_conv"), params, f"{branch}.conv.conv", bias=False)
        batch_norm(getattr(layer, f"{branch}_bn"), params, f"{branch}.conv.bn")


def _bam(layer, params):
    channel, spatial = "channel_att.gate_c.gate_c_", "spatial_att.gate_s.gate_s_"
    layer.fc.kernel.assign(params[f"{channel}fc_0.weight"].T)  # Linear (out, in) -> (in, out)
    layer.fc.bias.assign(params[f"{channel}fc_0.bias"])
    batch_norm(layer.fc_bn, params, f"{channel}bn_1")
    layer.fc_final.kernel.assign(params[f"{channel}fc_final.weight"].T)
    layer.fc_final.bias.assign(params[f"{channel}fc_final.bias"])
    dense_from_conv(layer.conv_reduce, params, f"{spatial}conv_reduce0")
    batch_norm(layer.bn_reduce, params, f"{spatial}bn_reduce0")
    for i, (conv, bn) in enumerate(zip(layer.dilated_convs, layer.dilated_bns, strict=True)):
        conv2d_kernel(conv, params, f"{spatial}conv_di_{i}")
        batch_norm(bn, params, f"{spatial}bn_di_{i}")
    dense_from_conv(layer.conv_final, params, f"{spatial}conv_final")


def _psa_shared(layer, params):
    for name in ("conv_q_right", "conv_v_right", "conv_q_left", "conv_v_left"):
        dense_from_conv(getattr(layer, name), params, name, bias=False)


def _psa(layer, params):
    _psa_shared(layer, params)
    dense_from_conv(layer.conv_up, params, "conv_up", bias=False)


def _psa_s(layer, params):
    _psa_shared(layer, params)
    dense_from_conv(layer.conv_up1, params, "conv_up.0")
    # LayerNorm([C / 8, 1, 1]): scale and offset of shape (C / 8, 1, 1).
    layer.norm.gamma.assign(params["conv_up.1.weight"].reshape(-1))
    layer.norm.beta.assign(params["conv_up.1.bias"].reshape(-1))
    dense_from_conv(layer.conv_up2, params, "conv_up.3")


def _simam(layer, params):
    pass  # no weights


def _sge(layer, params):
    layer.weight.assign(params["weight"].reshape(-1))  # (1, groups, 1, 1)
    layer.bias.assign(params["bias"].reshape(-1))


MAPPINGS = {
    "triplet": (_triplet, "TripletAttention"),
    "bam": (_bam, "BAM"),
    "psa": (_psa, "PSA_p"),
    "psa_s": (_psa_s, "PSA_s"),
    "simam": (_simam, "simam_module"),
    "sge": (_sge, "SpatialGroupEnhance"),
}
