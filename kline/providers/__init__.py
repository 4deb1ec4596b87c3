"""Providers by name. Each factory builds its provider from settings; imports are lazy so
that the CLI never pays for a provider it does not use."""

from __future__ import annotations

from collections.abc import Callable

from kline.config import Settings
from kline.providers.base import (
    AdjFactorProvider,
    FatalProviderError,
    InstrumentFactsProvider,
    Provider,
    ProviderConfigError,
    ProviderError,
    TransientProviderError,
    is_transient,
)


def _synthetic(settings: Settings) -> Provider:
    from kline.providers.synthetic import SyntheticProvider

    return SyntheticProvider(seed=settings.synthetic_seed)


def _tushare(settings: Settings, token_loader: Callable[[str], str] | None = None) -> Provider:
    from kline.providers.tushare import make_tushare_provider

    return make_tushare_provider(settings, token_loader=token_loader)


def _file(settings: Settings) -> Provider:
    from kline.providers.files import make_file_provider

    return make_file_provider(settings)


# tushare also takes ``token_loader`` (e.g. tasks.secrets.prefect_secret_loader)
PROVIDERS: dict[str, Callable[..., Provider]] = {
    "synthetic": _synthetic,
    "tushare": _tushare,
    "file": _file,
}


class UnknownProviderError(ValueError):
    pass


def check_provider_name(name: str) -> str:
    if name not in PROVIDERS:
        raise UnknownProviderError(
            f"unknown provider {name!r}; choose one of: {', '.join(sorted(PROVIDERS))}"
        )
    return name


def make_provider(settings: Settings, **options) -> Provider:
    """The provider named by ``settings.provider``; ``options`` go to providers that take
    them (``token_loader`` for tushare) and are ignored by the others."""
    factory = PROVIDERS[check_provider_name(settings.provider)]
    return factory(settings, **options) if settings.provider == "tushare" else factory(settings)


__all__ = [
    "PROVIDERS",
    "AdjFactorProvider",
    "ProviderConfigError",
    "FatalProviderError",
    "InstrumentFactsProvider",
    "Provider",
    "ProviderError",
    "TransientProviderError",
    "UnknownProviderError",
    "check_provider_name",
    "is_transient",
    "make_provider",
]
