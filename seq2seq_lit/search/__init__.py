"""Decoding strategies over the :class:`~seq2seq_lit.modules.Seq2Seq` step API, behind one interface
(:class:`~seq2seq_lit.search.base.Search`)."""

from .base import Hypotheses, Search
from .beam import BeamSearch, coverage_penalty, length_penalty
from .greedy import GreedySearch
from .sample import SampleSearch

__all__ = ["BeamSearch", "GreedySearch", "Hypotheses", "SampleSearch", "Search", "coverage_penalty", "length_penalty"]
