"""Decoding strategies over the :class:`~seq2seq_lit.modules.Seq2Seq` step API."""

from .greedy import GreedySearch, Hypotheses

__all__ = ["GreedySearch", "Hypotheses"]
