"""The score functions by name, for the attentions built on top of one (local, multi-head), and option checks.

The top-level choice needs no table: it is the Hydra config group ``model/attention``, whose file names are the
names below plus ``local_m``, ``local_p``, ``multihead`` and ``none``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

from ...errors import ConfigError
from .bahdanau import AdditiveAttention
from .base import Attention
from .graves import CosineAttention
from .luong import ConcatAttention, DotAttention, GeneralAttention, LocationAttention
from .vaswani import ScaledDotAttention

SCORES: dict[str, type[Attention]] = {
    "dot": DotAttention,
    "general": GeneralAttention,
    "concat": ConcatAttention,
    "additive": AdditiveAttention,
    "scaled_dot": ScaledDotAttention,
    "cosine": CosineAttention,
    "location": LocationAttention,
}


def options_of(cls: type[Attention]) -> list[str]:
    """The constructor options of an attention class beyond the sizes."""
    return [name for name in inspect.signature(cls).parameters if name not in ("query_size", "key_size")]


def check_options(cls: type[Attention], options: Mapping[str, Any], label: str) -> None:
    """Refuse options that ``cls`` (called ``label`` in the message) does not take.

    Raises:
        ConfigError: listing the valid options, or for ``coverage`` the scores that read it.
    """
    valid = options_of(cls)
    unknown = sorted(set(options) - set(valid))
    if "coverage" in unknown:
        with_coverage = [name for name, score in SCORES.items() if "coverage" in options_of(score)]
        raise ConfigError(f"{label} cannot read coverage; valid choices: {', '.join(with_coverage)}")
    if unknown:
        raise ConfigError(f"{label} has no option {', '.join(unknown)}; valid choices: {', '.join(valid) or 'none'}")


def build_score(name: str, query_size: int, key_size: int, options: Mapping[str, Any] | None = None) -> Attention:
    """The score ``name`` (a key of :data:`SCORES`) for sizes Q and K, with ``options``, e.g. ``{"coverage": True}``.

    Raises:
        ConfigError: for an unknown name or option, listing the valid ones (for ``coverage``, the scores that read
            it), or as the score's constructor raises.
    """
    if name not in SCORES:
        raise ConfigError(f"unknown attention score {name!r}; valid choices: {', '.join(SCORES)}")
    options = dict(options or {})
    check_options(SCORES[name], options, f"the {name} score")
    return SCORES[name](query_size, key_size, **options)


def build_attention(factory: Callable[..., Attention], query_size: int, key_size: int) -> Attention:
    """``factory(query_size=..., key_size=...)``, e.g. a Hydra ``_partial_`` config of ``model/attention``.

    Raises:
        ConfigError: for an option the attention class does not take (e.g. ``+model.attention.coverage=true`` on a
            score without coverage), listing the valid ones, or as the attention's constructor raises.
    """
    cls = factory.func if isinstance(factory, functools.partial) else None
    if isinstance(cls, type) and issubclass(cls, Attention):  # checked first, for a message better than a TypeError
        check_options(cls, factory.keywords, cls.__name__)
    return factory(query_size=query_size, key_size=key_size)
