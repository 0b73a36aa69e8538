"""Attention score functions behind one interface (:class:`Attention`); chosen by the config group ``model/attention``."""

from .bahdanau import AdditiveAttention
from .base import Attention, AttentionCache
from .luong import GeneralAttention

__all__ = ["Attention", "AttentionCache", "AdditiveAttention", "GeneralAttention"]
