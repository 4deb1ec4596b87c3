"""Typed settings with commented defaults.

Precedence, lowest to highest: the defaults below, a ``kline.toml`` file, ``KLINE_*``
environment variables, then CLI flags / flow parameters (``overrides``).

Environment variables: ``KLINE_<FIELD>`` for top-level fields (``KLINE_LAKE``,
``KLINE_PROVIDER``, ``KLINE_SYMBOLS=A,B``) and ``KLINE_<SECTION>_<FIELD>`` for sections
(``KLINE_TUSHARE_URL``, ``KLINE_TRAIN_EPOCHS``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_UNIVERSE: tuple[str, ...] = (
    "000001.SH",  # SSE Composite index (the seed article's series)
    "000300.SH",  # CSI 300 index
    "600519.SH",  # Kweichow Moutai, SSE main board
    "000001.SZ",  # Ping An Bank, SZSE main board (not the SSE Composite)
    "300750.SZ",  # CATL, ChiNext
    "688981.SH",  # SMIC, STAR Market
)

CONFIG_FILE_NAME = "kline.toml"


class ConfigError(ValueError):
    """A setting is missing, ill-typed or unknown; the message names it."""


@dataclass(frozen=True)
class TushareConfig:
    url: str = "http://api.waditu.com/dataapi"  # pro API base; proxies and tests override it
    token_env: str = "TUSHARE_TOKEN"  # environment variable holding the token
    secret_block: str = ""  # Prefect Secret block name, used when token_env is unset
    calls_per_minute: int = 200  # client-side limit; keep below the account's stated limit
    timeout_s: float = 30.0  # per HTTP call
    by_date_min_symbols: int = 30  # at or above this many stocks, per trade_date calls may be
    # used (when they also take fewer calls than per-symbol ones)
    max_codes_per_call: int = 100  # stock codes joined into one daily call (ts_code="a,b,...")
    adj_factor: bool = True  # fetch adjustment factors beside raw prices
    trade_cal_check: bool = True  # cross-check sessions with the vendor's trade_cal
    publish_lag_days: int = 7  # an open session this recent with no rows at all: not yet
    # published, raised as transient (older holes are reported, not raised)
    instrument_facts: bool = True  # stock_basic, namechange (ST periods) and stk_limit beside bars


@dataclass(frozen=True)
class FileConfig:
    source: str = ""  # file or folder of CSV/Parquet files (one symbol per file)
    calendar: str = ""  # exchange-calendars code for symbols outside the A-share registry
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> file column
    calendars: dict[str, str] = field(default_factory=dict)  # per-symbol calendar code
    estimate_amount: bool = True  # no amount column: volume * (O+H+L+C)/4, else NaN


@dataclass(frozen=True)
class CalendarConfig:
    close_cutoff: str = "17:30"  # HH:MM in ``timezone``: today's session counts as closed from here
    holidays: tuple[str, ...] = ()  # extra XSHG closures (ISO dates), for a user who cannot wait
    extra_sessions: tuple[str, ...] = ()  # weekdays the other layers think closed, that trade
    holiday_file: str = ""  # a holiday file of whole years, same format as kline/holidays.toml


@dataclass(frozen=True)
class IngestConfig:
    history_years: int = 2  # history fetched on an empty lake, ending at run_date
    retries: int = 3  # attempts after the first, only for transient provider errors
    retry_delay_s: float = 20.0  # base of the exponential backoff between retries
    retry_jitter: float = 0.5  # fraction of random jitter on each delay


@dataclass(frozen=True)
class ValidationConfig:
    limit_tolerance: float = 0.005  # slack on |close/pre_close - 1| beyond the board limit
    index_move_warn: float = 0.11  # index day moves beyond this are warnings
    pre_close_tolerance: float = 0.005  # |pre_close - previous close| above this warns (half a tick)
    lookback_days: int = 366  # how far back to find a symbol's previous curated row
    data_docs: bool = True  # build GX Data Docs into the lake
    docs_history: int = 30  # validation runs listed on the Data Docs index page


@dataclass(frozen=True)
class FeatureConfig:
    features: tuple[str, ...] = ("log_return", "hl_range", "open_gap", "log_volume_change", "volatility_20")
    target: str = "log_return"  # "log_return" (next session) or "seed" (next close, min-max)
    scaler: str = "zscore"  # "zscore" or "minmax"; fitted on the training span only
    window: int = 20  # sessions per input window


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "default"  # "default" or "seed" (the article's setup, leaks fixed)
    scope: str = "global"  # "global" (one model over the universe) or "per_symbol"
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    head: int = 0  # hidden units of an MLP head; 0 = linear head on the last LSTM state
    epochs: int = 60
    batch_size: int = 256  # 0 = full batch
    lr: float = 1e-3
    lr_schedule: str = "cosine"  # "cosine" (annealed over epochs) or "none"
    weight_decay: float = 0.0
    valid_fraction: float = 0.15  # of training windows, taken from the end of the span
    patience: int = 8  # early-stopping epochs without validation improvement
    clip_grad: float = 1.0
    seed: int = 7
    device: str = "auto"  # "auto" picks CUDA when present
    threads: int = 1  # torch CPU threads while training (small LSTMs run fastest on 1); 0 = torch default
    retrain: str = "on_change"  # "always", "every_n" or "on_change" (data fingerprint)
    retrain_every: int = 5  # sessions between retrainings when retrain="every_n"
    warm_start: bool = True  # start from the champion's weights when features and shape match
    test_sessions: int = 250  # sessions held out at the end of history for the backtest
    test_fraction: float = 0.0  # if > 0, hold out this fraction of sessions instead
    rolling_k: int = 20  # rolling_mean baseline: mean of the last k log returns
    ridge_alpha: float = 10.0  # ridge baseline: L2 penalty on the flattened scaled window


@dataclass(frozen=True)
class BacktestConfig:
    retrain_every: int = 60  # walk-forward: sessions between refits
    window: str = "expanding"  # "expanding" or "rolling"
    rolling_sessions: int = 750  # training span when window="rolling"
    models: tuple[str, ...] = ("lstm", "persistence", "rolling_mean", "ridge")  # walk-forward set
    promote_metric: str = "mase"  # any forecast metric (kline.metrics); lower/higher known
    threshold: float = 0.0  # go long when the predicted return exceeds this
    execution: str = "next_open"  # "next_open", "next_close" or "open_to_close" (one-session trades; T+1)
    capital: float = 1_000_000.0  # CNY per symbol
    commission: float = 0.00025  # of traded value, both sides
    min_commission: float = 5.0  # CNY per order
    stamp_duty: float = 0.0005  # of traded value, on sells only (stocks)
    transfer_fee: float = 0.00001  # of traded value, both sides (stocks)


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # where `kline docs` / `kline serve` serve reports and Data Docs
    port: int = 4210  # keep it stable: link artifacts of past runs point at it
    public_url: str = ""  # the URL users reach it by (a reverse proxy); default http://host:port


@dataclass(frozen=True)
class AlertsConfig:
    webhook_url: str = ""  # JSON POST {"subject", "body"} per alert; "" = alerts only in the UI
    slack_webhook_url: str = ""  # Slack incoming webhook, used when webhook_url is empty
    quarantine_rows: int = 50  # quarantined rows in one validated chunk that raise an alert
    decay_mase: float = 1.05  # champion's walk-forward MASE above this = decayed (1 = random walk)
    decay_sessions: int = 60  # last scored sessions the decay MASE is taken over
    late_after_s: int = 1800  # a scheduled daily run still Late after this long: alert
    running_after_s: int = 7200  # a daily run Running this long without finishing: alert
    daily_timeout_s: int = 10800  # served / deployed daily runs end TimedOut after this; 0 = never
    backfill_timeout_s: int = 0  # the same for backfill runs (long by nature); 0 = never


@dataclass(frozen=True)
class Settings:
    lake: str = "./data_lake"  # lake root: a local path (object-store URLs come later)
    provider: str = "synthetic"  # "synthetic", "tushare" or "file"
    symbols: tuple[str, ...] = DEFAULT_UNIVERSE
    synthetic_seed: int = 20240101  # the synthetic market's seed
    timezone: str = "Asia/Shanghai"  # run_date defaults to the latest session here
    max_concurrency: int = 1  # sessions replayed at once (each its own flow run)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    tushare: TushareConfig = field(default_factory=TushareConfig)
    file: FileConfig = field(default_factory=FileConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def fingerprint(self, *sections: str) -> str:
        """Short content hash of the whole settings, or of the named sections only."""
        d = self.to_dict()
        if sections:
            d = {k: d[k] for k in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **overrides: Any) -> Settings:
        """Copy with overrides applied; ``section={"field": v}`` updates part of a section."""
        return _merge(self, overrides, "overrides")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{where}: expected a boolean, got {value!r}")
        return bool(value)
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}") from None
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(str(v) for v in value)
    if origin is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(f"{where}: expected a JSON object, got {value!r}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def _merge(obj: Any, updates: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    changes: dict[str, Any] = {}
    for key, value in updates.items():
        if value is None:
            continue
        if key not in hints:
            raise ConfigError(f"{where}: unknown setting {key!r}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table")
            changes[key] = _merge(current, value, f"{where} [{key}]")
        else:
            changes[key] = _coerce(value, hints[key], f"{where}: {key}")
    return dataclasses.replace(obj, **changes)


def _env_updates(environ: typing.Mapping[str, str]) -> dict[str, Any]:
    hints = typing.get_type_hints(Settings)
    out: dict[str, Any] = {}
    for name, tp in hints.items():
        if dataclasses.is_dataclass(tp):
            sub: dict[str, Any] = {}
            for f in dataclasses.fields(tp):
                var = f"KLINE_{name}_{f.name}".upper()
                if var in environ:
                    sub[f.name] = environ[var]
            if sub:
                out[name] = sub
        else:
            var = f"KLINE_{name}".upper()
            if var in environ:
                out[name] = environ[var]
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: typing.Mapping[str, str] | None = None,
) -> Settings:
    """Build settings: defaults < kline.toml < KLINE_* env < overrides (None values ignored).

    ``config_file`` must exist when given; otherwise ``./kline.toml`` is read if present,
    or the file named by ``KLINE_CONFIG``.
    """
    environ = os.environ if environ is None else environ
    settings = Settings()
    path: Path | None = None
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {config_file}")
    elif environ.get("KLINE_CONFIG"):
        path = Path(environ["KLINE_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from KLINE_CONFIG)")
    elif Path(CONFIG_FILE_NAME).is_file():
        path = Path(CONFIG_FILE_NAME)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        settings = _merge(settings, data, str(path))
    settings = _merge(settings, _env_updates(environ), "environment")
    if overrides:
        settings = _merge(settings, overrides, "overrides")
    return settings
