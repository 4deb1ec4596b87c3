"""The provider protocol and its error classes.

A provider turns (symbols, start, end) into canonical bars (``kline.schema``), converting
units at its edge. It is chosen by name (``kline.providers.make_provider``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pandas as pd

from kline.rules import InstrumentFacts


class ProviderError(Exception):
    """A provider could not deliver; ``transient`` says whether retrying may help."""

    transient = False


class TransientProviderError(ProviderError):
    """Rate limit, timeout, network or server hiccup: worth retrying after a pause."""

    transient = True


class FatalProviderError(ProviderError):
    """Bad token, missing permission, unknown symbol: retrying cannot help."""


class ProviderConfigError(ValueError):
    """The provider cannot start with these settings (no token, no source file): bad usage,
    reported before any work is done (CLI exit 2)."""


@runtime_checkable
class Provider(Protocol):
    """Source of canonical daily bars."""

    name: str  # the ``source`` column and the raw file name

    def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Canonical bars for ``symbols`` on sessions in ``[start, end]`` (inclusive), sorted
        by (symbol, trade_date). A suspended stock simply has no row for that day."""
        ...


@runtime_checkable
class AdjFactorProvider(Protocol):
    """A provider that also knows adjustment factors (stored beside raw prices)."""

    def fetch_adj_factor(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Columns ``symbol, trade_date, adj_factor`` (see ``kline.schema.ADJ_SCHEMA``)."""
        ...


@runtime_checkable
class InstrumentFactsProvider(Protocol):
    """A provider that also knows dated instrument facts (``kline.rules.InstrumentFacts``)."""

    def fetch_instrument_facts(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> InstrumentFacts:
        """Listing dates and ST periods of ``symbols``, and the exchange's daily limit prices
        on sessions in ``[start, end]`` where the provider has them."""
        ...


def is_transient(exc: BaseException) -> bool:
    """True for errors a provider marks as worth retrying."""
    return bool(getattr(exc, "transient", False))


@runtime_checkable
class UniverseProvider(Protocol):
    """A provider that knows a market universe's members over time (``kline.universe``)."""

    def universe_members(self, name: str, start: dt.date, end: dt.date) -> list[str]:
        """Codes in universe ``name`` ("csi300" or "all") on any day of ``[start, end]``, as
        known on that day (no survivorship: members since dropped or delisted included)."""
        ...
