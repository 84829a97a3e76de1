"""The yolov4-tiny-keras scripts' own Keras 2 blocks (`tools/make_original_fixtures.py`)."""


def _ca_original(layer, params):
    # The scripts' 1x1 Conv2D kernels (1, 1, in, out) -> Dense kernels (in, out).
    layer.conv1.kernel.assign(params["ca_block_conv1_0/kernel"][0, 0])
    layer.conv_h.kernel.assign(params["ca_block_conv2_0/kernel"][0, 0])
    layer.conv_w.kernel.assign(params["ca_block_conv3_0/kernel"][0, 0])
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(layer.bn, name).assign(params[f"ca_block_bn_0/{name}"])


MAPPINGS = {"ca_original": (_ca_original, "ca_block")}
