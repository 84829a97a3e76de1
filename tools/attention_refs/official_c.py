"""Authors' code from their repositories (SA-Net, LSKNet, CBAM, ECA-Net, Coordinate Attention),
and timm's SE module, for the types the project defined before the fixtures existed.

Each repository is read at its HEAD from the git directory given with `--repo owner/name=PATH`
(e.g. `/work/.mirror/wofmanaf+SA-Net/repo`); nothing is copied into this project.
"""

from __future__ import annotations

from .common import Reference, load_repo_module

SA_NET = "wofmanaf/SA-Net"
LSKNET = "zcablii/LSKNet"
CBAM = "Jongchan/attention-module"
ECA_NET = "BangguWu/ECANet"
COORD = "Andrew-Qibin/CoordAttention"

# `models/sa_resnet.py` imports `load_state_dict` from the repository's `utils`, which
# `sa_layer` does not use.
_SA_STUBS = ("utils",)
# `lsknet.py` imports mmcv's initialisers, runner and norm builder and mmrotate's backbone
# registry (`from ..builder import ROTATED_BACKBONES`); `LSKblock` uses none of them. timm is
# installed and imported as it is.
_LSK_STUBS = (
    "mmcv",
    "mmcv.cnn",
    "mmcv.cnn.utils",
    "mmcv.cnn.utils.weight_init",
    "mmcv.runner",  # its BaseModule is torch's Module, see `_lsk`
    "mmrotate.models.builder",
)


def _sa(groups):
    def build(channels, repos):
        module, source = load_repo_module(repos, SA_NET, "models/sa_resnet.py", stubs=_SA_STUBS)
        return module.sa_layer(channels, groups=groups), source

    return build


def _lsk(channels, repos):
    # `class LSKNet(BaseModule)` subclasses mmcv's BaseModule, which a stub cannot stand in for:
    # torch's Module does (LSKblock itself is a plain torch Module).
    import sys
    import types

    import torch

    if "mmcv.runner" not in sys.modules:
        runner = types.ModuleType("mmcv.runner")
        runner.BaseModule = torch.nn.Module
        sys.modules["mmcv.runner"] = runner
    module, source = load_repo_module(
        repos, LSKNET, "mmrotate/models/backbones/lsknet.py", stubs=_LSK_STUBS
    )
    return module.LSKblock(channels), source


def _cbam(class_name):
    def build(channels, repos):
        module, source = load_repo_module(repos, CBAM, "MODELS/cbam.py")
        if class_name == "SpatialGate":  # takes no channel count
            return module.SpatialGate(), source
        return getattr(module, class_name)(channels), source

    return build


def _eca(channels, repos):
    module, source = load_repo_module(repos, ECA_NET, "models/eca_module.py")
    return module.eca_layer(channels), source


def _ca(channels, repos):
    module, source = load_repo_module(repos, COORD, "coordatt.py")
    return module.CoordAtt(channels, channels), source


def _se(channels, repos):
    import timm
    from timm.layers import create_attn

    module = create_attn("se", channels)
    return module, f"timm {timm.__version__}"


# The official CBAM: reduction 16, MLP biases, spatial batch norm (our defaults follow the
# yolov4-tiny-keras scripts instead).
_CBAM_PAPER = {"reduction": 16, "use_bias": True}

REFERENCES = {
    # The official default of 64 groups needs a multiple of 128 channels: 4 groups here, so that
    # 16 and 32 channels give 2 and 4 channels to each half-group.
    "sa": Reference(_sa(4), options={"groups": 4}, repo=SA_NET),
    "lsk": Reference(_lsk, repo=LSKNET),
    "cbam": Reference(_cbam("CBAM"), options={**_CBAM_PAPER, "spatial_bn": True}, repo=CBAM),
    "cbam_channel": Reference(_cbam("ChannelGate"), options=_CBAM_PAPER, repo=CBAM),
    "cbam_spatial": Reference(_cbam("SpatialGate"), options={"use_bn": True}, repo=CBAM),
    # eca_layer's default k_size=3 is what ECA's kernel-size formula gives for 16 and 32 channels.
    "eca": Reference(_eca, repo=ECA_NET),
    # CoordAtt(C, C) with reduction 32: mip = max(8, C // 32) = 8 for 16 and 32 channels.
    "ca": Reference(_ca, repo=COORD),
    # timm's hidden width is make_divisible(C / 16, 8) = 8 where ours is C // 16: the two agree
    # from 128 channels (YOLOv4-tiny's smallest attention input) up.
    "se": Reference(_se, options={"use_bias": True}, channels=(128,)),
}
