"""Universes: which codes a run covers, resolved at its start and as of its date.

``universe`` in the settings is ``"default"`` (the ``symbols`` list, six names unless set),
``"csi300"`` (the CSI 300 members), ``"all"`` (every listed stock), a list of codes, or
``"file:codes.txt"`` (one code a line, ``#`` comments). Market universes are point in time:
a run as of D covers the members on D; a backfill chunk covers those of any day in its span,
so names since dropped or delisted are kept (no survivorship bias). The provider answers
(``UniverseProvider``): tushare from ``index_weight`` / ``stock_basic``, the synthetic market
from ``synthetic_universe`` and its listing and delisting dates.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from kline.config import ConfigError, Settings
from kline.instruments import SymbolError, validate_symbol
from kline.providers.base import UniverseProvider

MARKET_UNIVERSES = ("csi300", "all")
NAMES = ("default", *MARKET_UNIVERSES)


class UniverseError(ConfigError):
    """A universe setting that names nothing usable; the message says which and why."""


def _file_codes(path: str) -> tuple[str, ...]:
    p = Path(path)
    if not p.is_file():
        raise UniverseError(f"universe: file not found: {path}")
    codes = [line.split("#", 1)[0].strip() for line in p.read_text().splitlines()]
    codes = [c for c in codes if c]
    if not codes:
        raise UniverseError(f"universe: {path} lists no code")
    return tuple(dict.fromkeys(codes))


def static_codes(settings: Settings) -> tuple[str, ...] | None:
    """The codes of a universe that does not change over time (``default``, a list, a
    file); None for a market universe. Raises UniverseError for a bad value."""
    u = settings.universe
    if isinstance(u, tuple):
        if not u:
            raise UniverseError("universe: an empty list of codes")
        return tuple(dict.fromkeys(u))
    if u == "default":
        return tuple(settings.symbols)
    if u.startswith("file:"):
        return _file_codes(u[len("file:"):])
    if u in MARKET_UNIVERSES:
        return None
    raise UniverseError(f"universe: unknown value {u!r}; choose default, csi300, all, a list of codes "
                        f"or file:codes.txt")


def check_universe(settings: Settings) -> None:
    """Raise UniverseError (exit 2) for a universe no run could resolve: an unknown name, a
    missing or empty file, an ill-formed code, a market universe the provider cannot list."""
    codes = static_codes(settings)
    if codes is None:
        if settings.provider == "file":
            raise UniverseError(f"universe: {settings.universe!r} needs a market provider (synthetic or "
                                f"tushare); the file provider covers the codes of its files")
        return
    for c in codes:
        try:
            validate_symbol(c, allow_foreign=settings.provider == "file")
        except SymbolError as exc:
            raise UniverseError(f"universe: {exc}") from None


def resolve_universe(settings: Settings, provider: object, start: dt.date, end: dt.date | None = None) -> list[str]:
    """The universe's codes on any day of ``[start, end]`` (``end`` default ``start``), sorted
    for a market universe, in the given order otherwise."""
    codes = static_codes(settings)
    if codes is not None:
        return list(codes)
    if not isinstance(provider, UniverseProvider):
        raise UniverseError(f"universe: {settings.universe!r} is not offered by the {settings.provider} provider")
    members = provider.universe_members(str(settings.universe), start, end or start)
    if not members:
        raise UniverseError(f"universe: {settings.universe!r} has no member on {start}..{end or start}")
    return sorted(set(members))


def with_universe(settings: Settings, provider: object, start: dt.date, end: dt.date | None = None) -> Settings:
    """``settings`` whose ``symbols`` are the universe resolved over ``[start, end]``."""
    if settings.universe == "default":
        return settings
    return settings.replace(symbols=resolve_universe(settings, provider, start, end))


__all__ = ["MARKET_UNIVERSES", "NAMES", "UniverseError", "check_universe", "resolve_universe", "static_codes",
           "with_universe"]
