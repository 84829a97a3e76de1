"""timm's Selective Kernel and Split attention (`tools/attention_refs/timm_extra_refs.py`)."""

from tests.layers.fixture_mappings import batch_norm, conv2d_kernel, dense_from_conv


def _sk(layer, params):
    for i, (conv, bn) in enumerate(zip(layer.convs, layer.bns, strict=True)):
        conv2d_kernel(conv, params, f"paths.{i}.conv", bias=False)
        batch_norm(bn, params, f"paths.{i}.bn")
    dense_from_conv(layer.fc_reduce, params, "attn.fc_reduce", bias=False)
    batch_norm(layer.attn_bn, params, "attn.bn")
    dense_from_conv(layer.fc_select, params, "attn.fc_select", bias=False)


def _slice(params, prefix, start, stop):
    return {
        f"{prefix}.{key}": params[f"{prefix}.{key}"][start:stop]
        for key in ("weight", "bias", "running_mean", "running_var")
        if f"{prefix}.{key}" in params
    }


def _splat(layer, params):
    # timm's one convolution to radix * C channels in groups * radix groups is split r's
    # convolution for output channels [r * C, (r + 1) * C) (its input: the r-th channel slice).
    channels = params["conv.weight"].shape[0] // layer.radix
    for r, conv in enumerate(layer.convs):
        part = _slice(params, "conv", r * channels, (r + 1) * channels)
        conv2d_kernel(conv, part, "conv", bias=layer.use_bias)
        if layer.use_bn:
            batch_norm(layer.bns[r], _slice(params, "bn0", r * channels, (r + 1) * channels), "bn0")
    conv2d_kernel(layer.fc1, params, "fc1")
    conv2d_kernel(layer.fc2, params, "fc2")
    if layer.use_bn:
        batch_norm(layer.bn1, params, "bn1")


MAPPINGS = {
    "sk": (_sk, "SelectiveKernel"),
    "splat": (_splat, "SplitAttn"),
}
