"""timm's attention modules (and segmentation_models_pytorch's scSE), imported from the packages."""

from __future__ import annotations

from .common import Reference


def _timm(create_name: str, **kwargs):
    def build(channels, repos):
        import timm
        from timm.layers import create_attn

        module = create_attn(create_name, channels, **kwargs)
        return module, f"timm {timm.__version__}"

    return build


def _ge(channels, repos):
    """timm's `GatherExcite(channels)` with its defaults. timm 1.0.31 cannot construct it with
    `use_mlp=True`: `ConvMlp(channels, rd_channels, act_layer=act_layer, *dd)` (`*dd` for
    `**dd`) passes the keys `"device"`, `"dtype"` positionally, so `act_layer` twice, a
    TypeError (in `create_attn("ge", C)` too). So it is built with `use_mlp=False` and given the
    `ConvMlp` that line means to build (`device`, `dtype` None); `forward` is timm's."""
    import timm
    from timm.layers import GatherExcite
    from timm.layers.helpers import make_divisible
    from timm.layers.mlp import ConvMlp
    from torch import nn

    module = GatherExcite(channels, use_mlp=False)
    rd_channels = make_divisible(channels / 16, 1, round_limit=0.0)
    module.mlp = ConvMlp(channels, rd_channels, act_layer=nn.ReLU)
    return module, f"timm {timm.__version__}"


def _scse(channels, repos):
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.base.modules import SCSEModule

    source = f"segmentation_models_pytorch {smp.__version__}"
    return SCSEModule(channels, reduction=16), source


REFERENCES = {
    "ese": Reference(_timm("ese")),
    "ceca": Reference(_timm("ceca")),
    "gc": Reference(_timm("gc")),
    "lcbam": Reference(_timm("lcbam")),
    "ge": Reference(_ge),
    "gca": Reference(_timm("gca")),
    "nl": Reference(_timm("nl")),
    "scse": Reference(_scse),
}
