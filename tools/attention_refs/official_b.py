"""The authors' released modules: Triplet Attention, BAM, Polarized Self-Attention (both
layouts), SimAM and SGE, imported from their repositories (git directories given with --repo)."""

from __future__ import annotations

from .common import Reference, load_repo_module

TRIPLET = "landskape-ai/triplet-attention"
BAM = "Jongchan/attention-module"
PSA = "DeLightCMU/PSA"
SIMAM = "ZjjConan/SimAM"
SGE = "implus/PytorchInsight"


def _triplet(channels, repos):
    # The file the README names (the root one); MODELS/triplet_attention.py computes the same.
    module, source = load_repo_module(repos, TRIPLET, "triplet_attention.py")
    return module.TripletAttention(), source


def _bam(channels, repos):
    module, source = load_repo_module(repos, BAM, "MODELS/bam.py")
    # ChannelGate.__init__ stores an undefined global `gate_activation` (a NameError as
    # released); it is never used, so any value lets the class build.
    module.gate_activation = None
    return module.BAM(channels), source


def _psa(class_name):
    def build(channels, repos):
        module, source = load_repo_module(repos, PSA, "semantic-segmentation/network/PSA.py")
        return getattr(module, class_name)(channels, channels), source

    return build


def _simam(channels, repos):
    module, source = load_repo_module(repos, SIMAM, "networks/attentions/simam_module.py")
    return module.simam_module(channels), source


SGE_GROUPS = 8


def _sge(channels, repos):
    # resnet_sge.py starts with `from .common_head import *` (torch imports only): loaded first,
    # under its dotted name, so that the relative import finds it.
    load_repo_module(repos, SGE, "classification/models/imagenet/common_head.py")
    module, source = load_repo_module(repos, SGE, "classification/models/imagenet/resnet_sge.py")
    return module.SpatialGroupEnhance(groups=SGE_GROUPS), source


REFERENCES = {
    "triplet": Reference(_triplet, repo=TRIPLET),
    # BAM's channel gate average-pools with an H x H window: a square grid (see `grid`).
    "bam": Reference(_bam, repo=BAM, grid=(6, 6)),
    "psa": Reference(_psa("PSA_p"), repo=PSA),
    "psa_s": Reference(_psa("PSA_s"), repo=PSA),
    "simam": Reference(_simam, repo=SIMAM),
    # The official default is 64 groups (as in its ResNets); 8 (our default) on 16 and 32
    # channels keeps the fixtures small, with 2 and 4 channels per group.
    "sge": Reference(_sge, options={"groups": SGE_GROUPS}, repo=SGE),
}
