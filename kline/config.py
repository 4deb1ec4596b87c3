"""Typed settings with commented defaults, validated by pydantic-settings.

Precedence, lowest to highest: the defaults below, a ``kline.toml`` file, ``KLINE_*``
environment variables, then CLI flags / flow parameters (``overrides``).

Environment variables: ``KLINE_<FIELD>`` for top-level fields (``KLINE_LAKE``,
``KLINE_PROVIDER``, ``KLINE_SYMBOLS=A,B``) and ``KLINE_<SECTION>_<FIELD>`` for sections
(``KLINE_TUSHARE_URL``, ``KLINE_TRAIN_EPOCHS``). Lists are comma-separated, tables JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import (
    EnvSettingsSource,
    InitSettingsSource,
    TomlConfigSettingsSource,
)

DEFAULT_UNIVERSE: tuple[str, ...] = (
    "000001.SH",  # SSE Composite index (the seed article's series)
    "000300.SH",  # CSI 300 index
    "600519.SH",  # Kweichow Moutai, SSE main board
    "000001.SZ",  # Ping An Bank, SZSE main board (not the SSE Composite)
    "300750.SZ",  # CATL, ChiNext
    "688981.SH",  # SMIC, STAR Market
)

CONFIG_FILE_NAME = "kline.toml"
ForecastMetric = Literal["rmse", "mae", "mase", "directional_accuracy", "ic", "rank_ic", "r2_oos"]
# a number given for a text setting (lake = 2024) is kept as its text, as before
_STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class ConfigError(ValueError):
    """A setting is missing, ill-typed or unknown; the message names it."""


def _split(value: Any) -> Any:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


Names = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split)]  # a list, or "a,b" text


def _universe(value: Any) -> Any:
    if isinstance(value, str) and "," in value:
        return tuple(_split(value))
    return tuple(value) if isinstance(value, list | tuple) else value


# a name ("default", "csi300", "all"), "file:codes.txt", or a list of codes ("a,b" text)
UniverseSpec = Annotated[str | tuple[str, ...], NoDecode, BeforeValidator(_universe)]


def _problem(err: Any, *prefix: str) -> str:
    """One pydantic error as ``section.field: what is wrong``."""
    name = ".".join(map(str, (*prefix, *err["loc"])))
    kind, value = err["type"], err.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown setting {name!r}"
    if kind in ("dataclass_type", "dataclass_args_type"):
        return f"[{name}] must be a table"
    if kind == "literal_error":
        choices = ", ".join(re.findall(r"'([^']*)'", err["ctx"]["expected"]))
        return f"{name}: unknown value {value!r}, choose from {choices}"
    expected = {"int": "int", "float": "float", "bool": "a boolean", "string": "str", "tuple": "a list",
                "dict": "a table"}.get(kind.split("_")[0])
    return f"{name}: expected {expected}, got {value!r}" if expected else f"{name}: {err['msg']}"


def _section(cls: type) -> type:
    """A frozen dataclass validated by pydantic; a bad value raises ConfigError naming it."""
    cls = dataclass(frozen=True, config=_STRICT)(cls)
    init = cls.__init__

    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(_problem(exc.errors()[0], cls.__name__)) from None

    cls.__init__ = checked_init
    return cls


@_section
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


@_section
class FileConfig:
    source: str = ""  # file or folder of CSV/Parquet files (one symbol per file)
    calendar: str = ""  # exchange-calendars code for symbols outside the A-share registry
    columns: dict[str, str] = dataclasses.field(default_factory=dict)  # canonical name -> file column
    calendars: dict[str, str] = dataclasses.field(default_factory=dict)  # per-symbol calendar code
    estimate_amount: bool = True  # no amount column: volume * (O+H+L+C)/4, else NaN
    max_mb: int = 512  # a vendor file larger than this is refused before it is read (MiB)


@_section
class CalendarConfig:
    close_cutoff: str = "17:30"  # HH:MM in ``timezone``: today's session counts as closed from here
    holidays: Names = ()  # extra XSHG closures (ISO dates), for a user who cannot wait
    extra_sessions: Names = ()  # weekdays the other layers think closed, that trade
    holiday_file: str = ""  # a holiday file of whole years, same format as kline/holidays.toml


@_section
class IngestConfig:
    history_years: int = 2  # history fetched on an empty lake, ending at run_date
    retries: int = 3  # attempts after the first, only for transient provider errors
    retry_delay_s: float = 20.0  # base of the exponential backoff between retries
    retry_jitter: float = 0.5  # fraction of random jitter on each delay
    backfill_chunk_rows: int = 250_000  # bars per backfill chunk: sessions per chunk = this //
    # symbols per batch (one ingest + one validation task run each; see benchmarks/RESULTS.md)


@_section
class ValidationConfig:
    limit_tolerance: float = 0.005  # slack on |close/pre_close - 1| beyond the board limit
    index_move_warn: float = 0.11  # index day moves beyond this are warnings
    pre_close_tolerance: float = 0.005  # |pre_close - previous close| above this warns (half a tick)
    lookback_days: int = 366  # how far back to find a symbol's previous curated row
    data_docs: bool = True  # build GX Data Docs into the lake
    docs_history: int = 30  # validation runs listed on the Data Docs index page


@_section
class FeatureConfig:
    features: Names = ("log_return", "hl_range", "open_gap", "log_volume_change", "volatility_20")
    target: Literal["log_return", "seed"] = "log_return"  # next session's log return; seed: next close, min-max
    scaler: Literal["zscore", "minmax"] = "zscore"  # fitted on the training span only
    window: int = 20  # sessions per input window


@_section
class TrainConfig:
    preset: Literal["default", "seed"] = "default"  # seed: the article's setup, leaks fixed
    scope: Literal["global", "per_symbol"] = "global"  # global: one model over the universe
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0
    head: int = 0  # hidden units of an MLP head; 0 = linear head on the last LSTM state
    epochs: int = 60
    batch_size: int = 256  # 0 = full batch
    lr: float = 1e-3
    lr_schedule: Literal["cosine", "none"] = "cosine"  # cosine: annealed over epochs
    weight_decay: float = 0.0
    valid_fraction: float = 0.15  # of training windows, taken from the end of the span
    patience: int = 8  # early-stopping epochs without validation improvement
    clip_grad: float = 1.0
    seed: int = 7
    device: str = "auto"  # "auto" picks CUDA when present
    threads: int = 1  # torch CPU threads while training (small LSTMs run fastest on 1); 0 = torch default
    retrain: Literal["always", "every_n", "on_change"] = "on_change"  # on_change: of the data fingerprint
    retrain_every: int = 5  # sessions between retrainings when retrain="every_n"
    warm_start: bool = True  # start from the champion's weights when features and shape match
    test_sessions: int = 250  # sessions held out at the end of history for the backtest
    test_fraction: float = 0.0  # if > 0, hold out this fraction of sessions instead
    rolling_k: int = 20  # rolling_mean baseline: mean of the last k log returns
    ridge_alpha: float = 10.0  # ridge baseline: L2 penalty on the flattened scaled window


@_section
class BacktestConfig:
    retrain_every: int = 60  # walk-forward: sessions between refits
    window: Literal["expanding", "rolling"] = "expanding"
    rolling_sessions: int = 750  # training span when window="rolling"
    models: Names = ("lstm", "persistence", "rolling_mean", "ridge")  # walk-forward set
    promote_metric: ForecastMetric = "mase"  # a forecast metric of kline.metrics; lower/higher known
    threshold: float = 0.0  # go long when the predicted return exceeds this
    execution: Literal["next_open", "next_close", "open_to_close"] = "next_open"  # one-session trades; T+1
    capital: float = 1_000_000.0  # CNY per symbol
    commission: float = 0.00025  # of traded value, both sides
    min_commission: float = 5.0  # CNY per order
    stamp_duty: float = 0.0005  # of traded value, on sells only (stocks)
    transfer_fee: float = 0.00001  # of traded value, both sides (stocks)
    topk: int = 50  # cross-section (universes of >= 30 stocks): stocks held by the top-k portfolio
    n_drop: int = 5  # cross-section: held stocks the top-k portfolio may swap per session
    interval_low: float = 0.1  # next-session forecast interval: quantiles of the walk-forward residuals
    interval_high: float = 0.9


@_section
class PromotionConfig:
    max_p: float = 0.10  # a candidate's Diebold-Mariano p against persistence must be below this
    min_sessions: int = 20  # scored sessions a comparison needs, to promote or to retire
    recent_sessions: int = 60  # the champion is re-judged on its newest out-of-sample sessions


@_section
class RunConfig:
    task_runner: Literal["threads", "dask"] = "threads"  # where ingest/validate batches run
    dask_address: str = ""  # dask: an existing scheduler (tcp://host:8786); "" = a local cluster
    dask_workers: int = 2  # dask without an address: worker processes of the local cluster
    batch_symbols: int = 500  # symbols per ingest / validate / features task run (0 = the whole universe)


@_section
class ServeConfig:
    host: str = "127.0.0.1"  # where `kline docs` / `kline serve` serve reports and Data Docs
    port: int = 4210  # keep it stable: link artifacts of past runs point at it
    public_url: str = ""  # the URL users reach it by (a reverse proxy); default http://host:port


@_section
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


@_section
class StorageConfig:
    """How an object-store lake (``lake = "s3://bucket/prefix"``) is reached. Empty fields fall
    back to the standard AWS variables and files (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, an instance role)."""

    endpoint_url: str = ""  # S3-compatible endpoint (MinIO, Ceph, a test server); "" = AWS
    region: str = ""  # e.g. "cn-north-1"; "" = the AWS default chain
    profile: str = ""  # a profile of ~/.aws/credentials; "" = the default chain
    access_key_id: str = ""  # prefer the AWS variables or a profile: a key here is plain text
    secret_access_key: str = ""
    lock_ttl_s: float = 120.0  # a partition lock whose holder stopped renewing it expires after this
    lock_timeout_s: float = 600.0  # how long a writer waits for a partition lock before failing


class Settings(BaseSettings):
    lake: str = "./data_lake"  # lake root: a local path or an object-store URL (s3://bucket/prefix)
    provider: str = "synthetic"  # "synthetic", "tushare" or "file"
    symbols: Names = DEFAULT_UNIVERSE  # the codes a run covers when universe = "default"
    universe: UniverseSpec = "default"  # "default" (= symbols), "csi300", "all", a list of codes
    # or "file:codes.txt"; resolved to the run's symbols at its start, as of its date
    synthetic_seed: int = 20240101  # the synthetic market's seed
    timezone: str = "Asia/Shanghai"  # run_date defaults to the latest session here
    max_concurrency: int = 1  # sessions replayed at once (each its own flow run), and task runs
    # at once under the threads task runner
    calendar: CalendarConfig = CalendarConfig()
    tushare: TushareConfig = TushareConfig()
    file: FileConfig = FileConfig()
    ingest: IngestConfig = IngestConfig()
    validation: ValidationConfig = ValidationConfig()
    features: FeatureConfig = FeatureConfig()
    train: TrainConfig = TrainConfig()
    backtest: BacktestConfig = BacktestConfig()
    promotion: PromotionConfig = PromotionConfig()
    run: RunConfig = RunConfig()
    serve: ServeConfig = ServeConfig()
    alerts: AlertsConfig = AlertsConfig()
    storage: StorageConfig = StorageConfig()

    # KLINE_TRAIN_EPOCHS: the first "_" after the prefix separates the section from its field
    model_config = SettingsConfigDict(env_prefix="KLINE_", env_nested_delimiter="_", env_nested_max_split=1,
                                      frozen=True, **_STRICT)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   **_: Any) -> tuple[Any, ...]:
        """``Settings(...)`` is the defaults and its arguments only: ``load_settings`` reads
        the file and the environment."""
        return (init_settings,)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return self.model_dump(mode="json")

    def fingerprint(self, *sections: str) -> str:
        """Short content hash of the whole settings, or of the named sections only."""
        d = {k: v for k, v in self.to_dict().items() if not sections or k in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **overrides: Any) -> Settings:
        """Copy with overrides applied; ``section={"field": v}`` updates part of a section."""
        try:
            return Settings(**_merged(self.to_dict(), overrides))
        except ValidationError as exc:
            raise ConfigError(f"overrides: {_problem(exc.errors()[0])}") from None


def _merged(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``updates``: tables merged key by key, None values skipped."""
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, Mapping):
            value = _merged(out[key] if isinstance(out.get(key), dict) else {}, value)
        if value is not None:
            out[key] = value
    return out


class _Environment(EnvSettingsSource):
    """The ``KLINE_*`` variables of ``environ`` that name a setting (others are ignored)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        fields = Settings.model_fields.items()
        known = {f"kline_{k}" for k, _ in fields} | {f"kline_{k}_{f.name}" for k, i in fields
                                                      if dataclasses.is_dataclass(i.annotation)
                                                      for f in dataclasses.fields(i.annotation)}
        return {k.lower(): v for k, v in self._environ.items() if k.lower() in known}


def _config_path(config_file: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    given, why = (config_file, "") if config_file else (environ.get("KLINE_CONFIG"), " (from KLINE_CONFIG)")
    if given and not Path(given).is_file():
        raise ConfigError(f"config file not found: {given}{why}")
    path = Path(given or CONFIG_FILE_NAME)
    return path if path.is_file() else None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings: defaults < kline.toml < KLINE_* env < overrides (None values ignored).

    ``config_file`` must exist when given, as must the file named by ``KLINE_CONFIG``;
    otherwise ``./kline.toml`` is read if present.
    """
    environ = os.environ if environ is None else environ
    path = _config_path(config_file, environ)
    overrides = _merged({}, overrides or {})
    try:  # highest priority first
        sources = (InitSettingsSource(Settings, overrides), _Environment(environ),
                   TomlConfigSettingsSource(Settings, toml_file=path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return Settings(_build_sources=(sources, {}))
    except ValidationError as exc:
        err = exc.errors()[0]  # named after where its value came from: flag, variable or file
        loc = [str(p) for p in err["loc"]]
        var = "KLINE_" + "_".join(loc[:2]).upper()
        flag = functools.reduce(lambda d, k: d.get(k) if isinstance(d, dict) else None, loc, overrides)
        where = "overrides" if flag is not None else var if var in environ else str(path or "settings")
        raise ConfigError(f"{where}: {_problem(err)}") from None
