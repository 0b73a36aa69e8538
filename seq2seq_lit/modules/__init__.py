"""Plain ``nn.Module`` building blocks: encoder, bridge, attention, decoder flows, and the seq2seq model."""

from .attention import (
    AdditiveAttention,
    Attention,
    AttentionCache,
    ConcatAttention,
    CosineAttention,
    DotAttention,
    GeneralAttention,
    LocalAttention,
    LocationAttention,
    MonotonicLocalAttention,
    MultiHeadAttention,
    NoAttention,
    PredictiveLocalAttention,
    ScaledDotAttention,
)
from .bridge import Bridge
from .decoder import BahdanauDecoder, DecoderState, LuongDecoder, RNNDecoder
from .encoder import RNNEncoder
from .seq2seq import EncoderMemory, Seq2Seq

__all__ = [
    "AdditiveAttention",
    "Attention",
    "AttentionCache",
    "BahdanauDecoder",
    "Bridge",
    "ConcatAttention",
    "CosineAttention",
    "DecoderState",
    "DotAttention",
    "EncoderMemory",
    "GeneralAttention",
    "LocalAttention",
    "LocationAttention",
    "LuongDecoder",
    "MonotonicLocalAttention",
    "MultiHeadAttention",
    "NoAttention",
    "PredictiveLocalAttention",
    "RNNDecoder",
    "RNNEncoder",
    "ScaledDotAttention",
    "Seq2Seq",
]
