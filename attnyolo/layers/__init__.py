"""Plug-and-play attention layers (SE, CBAM, ECA, Coordinate Attention, and timm's channel gates
ESE, CECA, GC and light CBAM; scSE, SimAM and SGE) and their registry."""

from attnyolo.layers.cbam import CBAM, ChannelAttention, SpatialAttention
from attnyolo.layers.ceca import CircularECA
from attnyolo.layers.coord import CoordinateAttention
from attnyolo.layers.coord_original import CoordinateAttentionOriginal
from attnyolo.layers.eca import ECA
from attnyolo.layers.ese import EffectiveSqueezeExcitation
from attnyolo.layers.gc import GlobalContext
from attnyolo.layers.insert import insert_attention
from attnyolo.layers.lcbam import LightCBAM
from attnyolo.layers.registry import (
    attention_names,
    attention_spec_name,
    get_attention,
    register_attention,
)
from attnyolo.layers.scse import SCSE
from attnyolo.layers.se import SqueezeExcitation
from attnyolo.layers.sge import SpatialGroupEnhance
from attnyolo.layers.simam import SimAM

__all__ = [
    "CBAM",
    "ECA",
    "SCSE",
    "ChannelAttention",
    "CircularECA",
    "CoordinateAttention",
    "CoordinateAttentionOriginal",
    "EffectiveSqueezeExcitation",
    "GlobalContext",
    "LightCBAM",
    "SimAM",
    "SpatialAttention",
    "SpatialGroupEnhance",
    "SqueezeExcitation",
    "attention_names",
    "attention_spec_name",
    "get_attention",
    "insert_attention",
    "register_attention",
]
