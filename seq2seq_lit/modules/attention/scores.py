"""The score functions by name, for the attentions built on top of one (local, multi-head), and option checks.

The names are those of the attention catalogue (:mod:`~seq2seq_lit.modules.attention.catalogue`, the files of the
config group ``model/attention``) whose class is a score (``Attention.is_score``): a new score's YAML file makes it a
choice of ``score=`` too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator, Mapping
from typing import Any, Callable

from ...errors import ConfigError
from .base import Attention
from .catalogue import attention_catalogue


class _Scores(Mapping[str, type[Attention]]):
    """The score classes by catalogue name, in name order; read on first use, since resolving the YAML files'
    ``_target_`` imports :mod:`seq2seq_lit.modules`, which imports this module."""

    @functools.cached_property
    def _classes(self) -> dict[str, type[Attention]]:
        classes = {name: entry.cls for name, entry in attention_catalogue().items()}
        return {name: cls for name, cls in classes.items() if getattr(cls, "is_score", False)}

    def __getitem__(self, name: str) -> type[Attention]:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)


SCORES: Mapping[str, type[Attention]] = _Scores()


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
