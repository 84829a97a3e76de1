"""The yolov4-tiny-keras scripts' own Keras 2 blocks (`tools/make_original_fixtures.py`):
`ca_block` for `ca_original`, and `se_block`, `cbam_block`, `eca_block` for the defaults of
`se`, `cbam` and `eca` (fixtures `<type>@original_<C>.npz`). Their weights are Keras weights
already: Dense and Conv kernels map one to one, 1x1 Conv2D kernels drop their 1x1."""


def _ca_original(layer, params):
    layer.conv1.kernel.assign(params["ca_block_conv1_0/kernel"][0, 0])
    layer.conv_h.kernel.assign(params["ca_block_conv2_0/kernel"][0, 0])
    layer.conv_w.kernel.assign(params["ca_block_conv3_0/kernel"][0, 0])
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(layer.bn, name).assign(params[f"ca_block_bn_0/{name}"])


def _se(layer, params):
    layer.squeeze.kernel.assign(params["se_block_one_0/kernel"])
    layer.excite.kernel.assign(params["se_block_two_0/kernel"])


def _cbam(layer, params):
    channel, spatial = layer.channel_attention, layer.spatial_attention
    channel.mlp_hidden.kernel.assign(params["channel_attention_shared_one_0/kernel"])
    channel.mlp_out.kernel.assign(params["channel_attention_shared_two_0/kernel"])
    # Both stack (mean, max) before the 7x7 convolution.
    spatial.conv.kernel.assign(params["spatial_attention_0/kernel"])


def _eca(layer, params):
    layer.conv.kernel.assign(params["eca_layer_0/kernel"])


MAPPINGS = {
    "ca_original": (_ca_original, "ca_block"),
    "se@original": (_se, "se_block"),
    "cbam@original": (_cbam, "cbam_block"),
    "eca@original": (_eca, "eca_block"),
}
