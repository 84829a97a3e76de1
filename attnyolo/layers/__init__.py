"""Plug-and-play attention layers (SE, CBAM, ECA, Coordinate Attention, and timm's channel gates
ESE, CECA, GC and light CBAM; Gather-Excite, GCNet's additive global context and non-local
attention, criss-cross attention; timm's Selective Kernel and Split attention; scSE, SimAM and
SGE; Shuffle Attention and the LSK block; Triplet Attention, BAM and Polarized Self-Attention)
and their registry."""

from attnyolo.layers.bam import BAM
from attnyolo.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from attnyolo.layers.cc import CrissCrossAttention
from attnyolo.layers.ceca import CircularECA
from attnyolo.layers.coord import CoordinateAttention
from attnyolo.layers.coord_original import CoordinateAttentionOriginal
from attnyolo.layers.eca import ECA
from attnyolo.layers.ese import EffectiveSqueezeExcitation
from attnyolo.layers.gc import GlobalContext, GlobalContextAdd
from attnyolo.layers.ge import GatherExcite
from attnyolo.layers.insert import insert_attention
from attnyolo.layers.lcbam import LightCBAM
from attnyolo.layers.lsk import LargeSelectiveKernel
from attnyolo.layers.nonlocal_attn import NonLocalAttention
from attnyolo.layers.psa import PolarizedSelfAttention, SequentialPolarizedSelfAttention
from attnyolo.layers.registry import (
    attention_names,
    attention_spec_name,
    get_attention,
    register_attention,
)
from attnyolo.layers.sa import ShuffleAttention
from attnyolo.layers.scse import SCSE
from attnyolo.layers.se import SqueezeExcitation
from attnyolo.layers.sge import SpatialGroupEnhance
from attnyolo.layers.simam import SimAM
from attnyolo.layers.sk import SelectiveKernel
from attnyolo.layers.splat import SplitAttention
from attnyolo.layers.triplet import TripletAttention

__all__ = [
    "BAM",
    "CBAM",
    "ECA",
    "SCSE",
    "ChannelAttention",
    "CircularECA",
    "CoordinateAttention",
    "CoordinateAttentionOriginal",
    "CrissCrossAttention",
    "EffectiveSqueezeExcitation",
    "GatherExcite",
    "GlobalContext",
    "GlobalContextAdd",
    "LargeSelectiveKernel",
    "LightCBAM",
    "NonLocalAttention",
    "PolarizedSelfAttention",
    "SelectiveKernel",
    "SequentialPolarizedSelfAttention",
    "ShuffleAttention",
    "SimAM",
    "SpatialAttention",
    "SpatialGroupEnhance",
    "SplitAttention",
    "SqueezeExcitation",
    "TripletAttention",
    "attention_names",
    "attention_spec_name",
    "get_attention",
    "insert_attention",
    "register_attention",
]
