"""Plain ``nn.Module`` building blocks: encoder, bridge, attention, decoder flows, and the seq2seq model."""

from .attention import AdditiveAttention, Attention, AttentionCache, GeneralAttention
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
    "DecoderState",
    "EncoderMemory",
    "GeneralAttention",
    "LuongDecoder",
    "RNNDecoder",
    "RNNEncoder",
    "Seq2Seq",
]
