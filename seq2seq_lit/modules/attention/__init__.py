"""Attention score functions behind one interface (:class:`Attention`); chosen by the config group ``model/attention``."""

from .bahdanau import AdditiveAttention
from .base import Attention, AttentionCache, Window
from .graves import CosineAttention
from .local import LocalAttention, MonotonicLocalAttention, PredictiveLocalAttention
from .luong import ConcatAttention, DotAttention, GeneralAttention, LocationAttention
from .multihead import MultiHeadAttention
from .none import NoAttention
from .scores import SCORES, build_attention, build_score
from .vaswani import ScaledDotAttention

__all__ = [
    "SCORES",
    "AdditiveAttention",
    "Attention",
    "AttentionCache",
    "ConcatAttention",
    "CosineAttention",
    "DotAttention",
    "GeneralAttention",
    "LocalAttention",
    "LocationAttention",
    "MonotonicLocalAttention",
    "MultiHeadAttention",
    "NoAttention",
    "PredictiveLocalAttention",
    "ScaledDotAttention",
    "Window",
    "build_attention",
    "build_score",
]
