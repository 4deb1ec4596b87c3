"""The bar expectation suite, defined in code, and one Great Expectations run over a chunk.

Every rule is one GX expectation whose ``meta`` carries ``rule`` and ``severity``:

- ``chunk`` scope (schema): a failure rejects the whole chunk (``ChunkValidationError``).
- ``row`` scope, ``critical``: a failing row is quarantined.
- ``row`` scope, ``warning``: the row is kept and the warning is reported.

Rules that need the instrument (price limit, asset type), its exchange calendar or the
previous row run over derived ``chk_*`` columns that ``derive_checks`` computes with
vectorised pandas/numpy; the others run on the bar columns themselves. A rule that cannot be
evaluated on a row (a NaN input) passes that row: the not-null rules own missing values, so
a row broken in one way fails exactly the rules about that way.

``great_expectations`` is imported inside ``run_suite`` only (the import takes seconds).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from kline.calendar import sessions_array, to_date
from kline.config import ValidationConfig
from kline.instruments import Instrument
from kline.jsonable import jsonable
from kline.rules import InstrumentFacts, limit_table
from kline.schema import BAR_COLUMNS, FLOAT_COLUMNS, KEY_COLUMNS

CRITICAL = "critical"
WARNING = "warning"
ROW_ID = "row_id"  # position of the row in the validated frame; GX reports failures by it

SUITE_NAME = "curated_bars"
CHECK_COLUMNS = [
    "chk_is_session",  # trade_date is a session of the symbol's calendar (None: no date)
    "chk_not_future",  # trade_date <= today in the exchange's time zone
    "chk_limit_excess",  # move beyond the dated limit (fraction of pre_close); NaN: no limit /
    # NaN inputs / exchange limit prices known
    "chk_limit_price_excess",  # CNY beyond the exchange's own limit prices; NaN: none published
    "chk_limit_rule",  # the limit applied and its source (kline.rules), for the quarantine reason
    "chk_index_move",  # |close/pre_close - 1| for indices, NaN for stocks
    "chk_pre_close_diff",  # |pre_close - previous row's close|; NaN without a previous row
    "chk_sessions_missing",  # calendar sessions between the previous row and this one
]
GX_COLUMNS = [ROW_ID, *BAR_COLUMNS, *CHECK_COLUMNS]

# What ExpectColumnValuesToBeOfType compares with the pandas dtype (or, for object columns,
# each value's type): tz-aware timestamps report ``Timestamp``, Arrow date32 gives ``date``.
_COLUMN_TYPES = {
    "symbol": "str",
    "trade_date": "date",
    **{c: "float64" for c in FLOAT_COLUMNS},
    "source": "str",
    "ingested_at": "Timestamp",
}


class ChunkValidationError(ValueError):
    """The whole chunk failed (schema); ``expectations`` names the failed rules."""

    def __init__(self, expectations: list[str], detail: str = ""):
        self.expectations = list(expectations)
        msg = "chunk rejected by expectation(s): " + ", ".join(self.expectations)
        super().__init__(msg + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class Expectation:
    """One rule of the suite: a GX expectation class name and its kwargs."""

    rule: str
    severity: str  # CRITICAL or WARNING
    scope: str  # "chunk" or "row"
    gx_type: str  # class name in great_expectations.expectations
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def bar_suite(cfg: ValidationConfig, today: dt.date) -> list[Expectation]:
    """The bar suite in evaluation order; ``today`` bounds trade_date (Asia/Shanghai)."""
    return [
        Expectation("schema_columns", CRITICAL, "chunk", "ExpectTableColumnsToMatchSet",
                    {"column_set": GX_COLUMNS, "exact_match": True},
                    "exactly the canonical columns (plus the derived check columns)"),
        *(Expectation(f"schema_type_{c}", CRITICAL, "chunk", "ExpectColumnValuesToBeOfType",
                      {"column": c, "type_": t}, f"{c} has type {t}")
          for c, t in _COLUMN_TYPES.items()),
        *(Expectation(f"not_null_{c}", CRITICAL, "row", "ExpectColumnValuesToNotBeNull",
                      {"column": c}, f"{c} is present")
          for c in ["symbol", "trade_date", "open", "high", "low", "close"]),
        Expectation("unique_symbol_trade_date", CRITICAL, "row",
                    "ExpectCompoundColumnsToBeUnique", {"column_list": KEY_COLUMNS},
                    "one bar per (symbol, trade_date); every copy is rejected"),
        *(Expectation(f"positive_{c}", CRITICAL, "row", "ExpectColumnValuesToBeBetween",
                      {"column": c, "min_value": 0, "strict_min": True}, f"{c} > 0")
          for c in ["open", "high", "low", "close", "pre_close"]),
        *(Expectation(f"non_negative_{c}", CRITICAL, "row", "ExpectColumnValuesToBeBetween",
                      {"column": c, "min_value": 0}, f"{c} >= 0")
          for c in ["volume", "amount"]),
        *(Expectation(f"{a}_{'ge' if a == 'high' else 'le'}_{b}", CRITICAL, "row",
                      "ExpectColumnPairValuesAToBeGreaterThanB",
                      {"column_A": a if a == "high" else b, "column_B": b if a == "high" else a,
                       "or_equal": True, "ignore_row_if": "either_value_is_missing"},
                      f"{a} {'>=' if a == 'high' else '<='} {b}")
          for a, b in [("high", "open"), ("high", "close"), ("high", "low"), ("low", "open"), ("low", "close")]),
        Expectation("trading_session", CRITICAL, "row", "ExpectColumnValuesToBeInSet",
                    {"column": "chk_is_session", "value_set": [True]},
                    "trade_date is a session of the instrument's exchange calendar"),
        Expectation("not_in_future", CRITICAL, "row", "ExpectColumnValuesToBeInSet",
                    {"column": "chk_not_future", "value_set": [True]},
                    f"trade_date <= {today.isoformat()} (Asia/Shanghai)"),
        Expectation("price_limit", CRITICAL, "row", "ExpectColumnValuesToBeBetween",
                    {"column": "chk_limit_excess", "max_value": cfg.limit_tolerance},
                    "close within the dated limit of its board, status and listing day (or the "
                    "exchange's limit prices) plus tolerance, as a fraction of pre_close"),
        Expectation("exchange_price_limit", CRITICAL, "row", "ExpectColumnValuesToBeBetween",
                    {"column": "chk_limit_price_excess", "max_value": 0.005},
                    "close within the exchange's published limit prices (stk_limit), to half a tick"),
        Expectation("index_move", WARNING, "row", "ExpectColumnValuesToBeBetween",
                    {"column": "chk_index_move", "max_value": cfg.index_move_warn},
                    f"index day move within +/-{cfg.index_move_warn:.0%}"),
        Expectation("pre_close_matches_previous_close", WARNING, "row",
                    "ExpectColumnValuesToBeBetween",
                    {"column": "chk_pre_close_diff", "max_value": cfg.pre_close_tolerance},
                    "pre_close equals the previous row's close (else corporate action or bad data)"),
        Expectation("no_missing_sessions", WARNING, "row", "ExpectColumnValuesToBeBetween",
                    {"column": "chk_sessions_missing", "max_value": 0},
                    "no calendar session skipped since the symbol's previous row"),
        Expectation("volume_not_zero", WARNING, "row", "ExpectColumnValuesToNotBeInSet",
                    {"column": "volume", "value_set": [0.0]}, "volume is not zero on a session"),
    ]


def derive_checks(
    bars: pd.DataFrame,
    instruments: Mapping[str, Instrument],
    previous: pd.DataFrame,
    today: dt.date,
    facts: InstrumentFacts | None = None,
) -> pd.DataFrame:
    """``bars`` plus ``row_id`` and the ``chk_*`` columns, rows sorted by (symbol, trade_date).

    ``instruments`` maps every symbol in ``bars`` to its Instrument. ``previous`` holds at most
    one row per symbol (``symbol, trade_date, close``): its last curated bar before the chunk,
    so the first row of a chunk is compared with it rather than flagged. ``facts`` (listing
    dates, ST periods, exchange limit prices) date the price limit (``kline.rules``). Missing
    canonical columns are tolerated here (treated as NaN) so that the schema rule can report
    them.
    """
    frame = bars.sort_values([c for c in KEY_COLUMNS if c in bars.columns], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.insert(0, ROW_ID, np.arange(len(frame), dtype="int64"))
    rows = _Rows.of(frame, instruments)
    prev_days, prev_closes = _previous(previous)
    is_session, session_pos = _session_checks(frame, rows, prev_days, today)
    _limit_checks(frame, rows, facts)
    _continuity_checks(frame, rows, prev_days, prev_closes, is_session, session_pos)
    return frame


@dataclass
class _Rows:
    """Per-row arrays of a sorted chunk: symbol codes into ``uniq``, instruments, days."""

    n: int
    codes: np.ndarray
    uniq: Any
    insts: list[Instrument | None]
    is_index: np.ndarray
    days: np.ndarray
    has_day: np.ndarray
    cal_of_code: np.ndarray
    row_cal: np.ndarray
    close: np.ndarray
    pre_close: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, instruments: Mapping[str, Instrument]) -> _Rows:
        n = len(frame)

        def num(col: str) -> np.ndarray:
            if col not in frame:
                return np.full(n, np.nan)
            return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)

        symbols = frame["symbol"] if "symbol" in frame else pd.Series([None] * n, dtype="object")
        codes, uniq = pd.factorize(symbols, use_na_sentinel=True)
        insts = [instruments.get(s) for s in uniq]
        index_of = np.array([bool(i is not None and i.is_index) for i in insts] + [False])
        if "trade_date" in frame:
            days = pd.to_datetime(frame["trade_date"], errors="coerce").to_numpy().astype("datetime64[D]")
        else:
            days = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        cal_of_code = np.array([i.calendar if i is not None else "" for i in insts] + [""], dtype=object)
        # code -1 (null symbol) picks the trailing sentinel of the per-code arrays
        return cls(n, codes, uniq, insts, index_of[codes], days, ~np.isnat(days), cal_of_code,
                   cal_of_code[codes], num("close"), num("pre_close"))


def _session_checks(frame: pd.DataFrame, r: _Rows, prev_days: Mapping[str, np.datetime64],
                    today: dt.date) -> tuple[np.ndarray, np.ndarray]:
    """``chk_is_session`` and ``chk_not_future``; returns (is_session, position in the calendar)
    with one sorted session array per calendar, indexed once for the whole chunk."""
    is_session = np.zeros(r.n, dtype=bool)
    session_pos = np.zeros(r.n, dtype="int64")
    days = r.days
    if r.has_day.any():  # else both checks are None on every row
        lo = min(days[r.has_day].min(), *prev_days.values()) if prev_days else days[r.has_day].min()
        hi = days[r.has_day].max()
        for cal in {c for c in r.cal_of_code if c}:
            m = (r.row_cal == cal) & r.has_day
            if not m.any():
                continue
            sess = sessions_array(to_date(lo), to_date(hi), cal)
            pos = np.searchsorted(sess, days[m])
            is_session[m] = (pos < len(sess)) & (sess[np.minimum(pos, len(sess) - 1)] == days[m])
            session_pos[m] = pos
    frame["chk_is_session"] = np.where(r.has_day, is_session, None)
    frame["chk_not_future"] = np.where(r.has_day, days <= np.datetime64(today, "D"), None)
    return is_session, session_pos


def _limit_checks(frame: pd.DataFrame, r: _Rows, facts: InstrumentFacts | None) -> None:
    """``chk_limit_excess`` / ``chk_limit_price_excess`` / ``chk_limit_rule`` from the dated
    limit of each row, and ``chk_index_move`` (an index's absolute return)."""
    up, down = np.full(r.n, np.nan), np.full(r.n, np.nan)
    up_price, down_price = np.full(r.n, np.nan), np.full(r.n, np.nan)
    rule = np.full(r.n, None, dtype=object)
    for k, inst in enumerate(r.insts):
        rows = np.flatnonzero((r.codes == k) & r.has_day)
        if inst is None or not len(rows):
            continue
        t = limit_table(str(r.uniq[k]), r.days[rows], facts, inst)
        up[rows], down[rows], up_price[rows], down_price[rows], rule[rows] = (
            t.up, t.down, t.up_price, t.down_price, t.rule)
    close, pre_close = r.close, r.pre_close
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(pre_close > 0, close / pre_close - 1.0, np.nan)
        excess = np.where(np.isnan(up_price), np.fmax(ret - up, -ret - down), np.nan)
    frame["chk_limit_excess"] = np.where(np.isnan(ret), np.nan, excess)
    frame["chk_limit_price_excess"] = np.fmax(close - up_price, down_price - close)
    frame["chk_limit_rule"] = rule
    frame["chk_index_move"] = np.where(r.is_index, np.abs(ret), np.nan)


def _continuity_checks(frame: pd.DataFrame, r: _Rows, prev_days: Mapping[str, np.datetime64],
                       prev_closes: Mapping[str, float], is_session: np.ndarray, session_pos: np.ndarray) -> None:
    """``chk_pre_close_diff`` and ``chk_sessions_missing`` against the previous row of the same
    symbol: the row before in the sorted frame, or for a symbol's first row its last curated bar."""
    n, codes, has_day = r.n, r.codes, r.has_day
    first = np.ones(n, dtype=bool)
    if n:
        first[1:] = codes[1:] != codes[:-1]
    prev_close = np.full(n, np.nan)
    prev_close[1:] = r.close[:-1]
    prev_known = ~first & has_day & np.roll(has_day, 1)
    gap = np.full(n, np.nan)
    # A skipped session shows as a jump of more than one in the calendar position. Rows on
    # non-sessions are the trading_session rule's business, not a gap.
    inner = prev_known & is_session
    gap[1:][inner[1:]] = np.maximum(session_pos[1:] - session_pos[:-1] - 1, 0)[inner[1:]]
    for i in np.flatnonzero(first):
        sym = r.uniq[codes[i]] if codes[i] >= 0 else None
        prev_close[i] = np.nan
        if sym in prev_closes and has_day[i] and r.row_cal[i]:
            prev_close[i] = prev_closes[sym]
            prev_known[i] = True
            if is_session[i]:
                d, cal = to_date(prev_days[sym]), r.row_cal[i]
                between = sessions_array(d + dt.timedelta(days=1), to_date(r.days[i]) - dt.timedelta(days=1), cal)
                gap[i] = len(between)
    frame["chk_pre_close_diff"] = np.where(prev_known, np.abs(r.pre_close - prev_close), np.nan)
    frame["chk_sessions_missing"] = gap.astype("float64")


def _previous(previous: pd.DataFrame) -> tuple[dict[str, np.datetime64], dict[str, float]]:
    """Per symbol, the day and the close of its last curated bar (``derive_checks``' ``previous``)."""
    if previous is None or previous.empty:
        return {}, {}
    symbols = previous["symbol"].astype(str)
    days = pd.to_datetime(previous["trade_date"]).to_numpy().astype("datetime64[D]")
    return dict(zip(symbols, days, strict=True)), dict(zip(symbols, previous["close"].astype(float), strict=True))


@dataclass(frozen=True, kw_only=True)
class ExpectationOutcome(Expectation):
    """A rule and what GX found for it: ``failed_rows`` are ``row_id`` values (row scope)."""

    success: bool
    unexpected_count: int
    failed_rows: np.ndarray
    observed: Any = None
    exception: str | None = None


@dataclass
class SuiteOutcome:
    """One GX run: per-rule outcomes, GX statistics, the Data Docs index (or None)."""

    success: bool
    outcomes: list[ExpectationOutcome]
    statistics: dict[str, Any]
    docs_index: str | None = None
    seconds: float = 0.0
    docs_pages: dict[str, str] = field(default_factory=dict)  # severity -> validation page

    def chunk_failures(self) -> list[str]:
        """Rules whose failure rejects the whole chunk: schema rules, or a row rule that
        could not be evaluated at all (GX raised)."""
        return [o.rule for o in self.outcomes
                if not o.success and (o.scope == "chunk" or o.exception is not None)]


@dataclass(frozen=True)
class DocsSite:
    """Where GX keeps validation results and builds Data Docs (local directories).

    ``links`` (label -> local path, e.g. the run date's report) are added to the top of the
    run's validation pages as relative links; the target need not exist yet."""

    site_dir: str
    results_dir: str
    history: int = 30  # runs listed on the index page; bounds the index build cost
    links: Mapping[str, str] = field(default_factory=dict)
    index_links: Mapping[str, str] = field(default_factory=dict)  # the same, on the index page


def suite_name(severity: str) -> str:
    """The GX suite that holds the rules of one severity (``curated_bars_critical`` ...).

    Critical and warning rules are separate suites so that a Data Docs page reads "Failed"
    only when a critical rule failed; schema rules are critical."""
    return f"{SUITE_NAME}_{severity}"


def run_suite(
    frame: pd.DataFrame,
    suite: list[Expectation],
    run_name: str,
    docs: DocsSite | None = None,
    docs_lock: Any = None,
    asset_name: str = "bars",
) -> SuiteOutcome:
    """Validate ``frame`` (from ``derive_checks``) with the real GX engine: one run of each
    severity's suite (``suite_name``) on the same batch, results in ``suite``'s order.

    GX writes nothing outside ``docs`` (an ephemeral context, progress bars off); the pages
    it builds there load nothing from outside the site (``kline.datadocs``) and name the data
    asset ``asset_name``. ``docs_lock`` (a context manager) serialises the Data Docs build
    across processes.
    """
    import contextlib
    import time

    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    t0 = time.perf_counter()
    ctx = _gx_context(docs)
    batch = (ctx.data_sources.add_pandas("lake").add_dataframe_asset("bars")
             .add_batch_definition_whole_dataframe("chunk"))
    run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
    raw: dict[str, Any] = {}  # rule -> GX expectation result
    vrids: dict[str, Any] = {}  # severity -> ValidationResultIdentifier
    success = True
    statistics: dict[str, Any] = {}
    for severity in (CRITICAL, WARNING):
        rules = [e for e in suite if e.severity == severity]
        if not rules:
            continue
        result = _run_gx_suite(ctx, batch, suite_name(severity), rules, frame, run_id)
        success = success and bool(result.success)
        for k in ("evaluated_expectations", "successful_expectations", "unsuccessful_expectations"):
            statistics[k] = statistics.get(k, 0) + int(result.statistics.get(k) or 0)
        for r in result.results:
            raw[r.expectation_config.meta["rule"]] = r
        # GX's fluent dataframe assets leave the page header's "Data asset" empty: name it.
        result.meta.setdefault("batch_spec", {})["data_asset_name"] = asset_name
        vrids[severity] = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name(severity)),
            run_id=run_id, batch_identifier=_batch_id(result),
        )
        if docs is not None:
            ctx.validation_results_store.set(vrids[severity], result)
    if statistics.get("evaluated_expectations"):
        statistics["success_percent"] = 100.0 * statistics.get("successful_expectations", 0) / statistics["evaluated_expectations"]

    outcomes = [_outcome(e, raw[e.rule]) for e in suite]

    docs_index, pages = None, {}
    if docs is not None:
        docs_index, pages = _build_docs(ctx, docs, vrids, docs_lock or contextlib.nullcontext())
    return SuiteOutcome(
        success=success, outcomes=outcomes, statistics=jsonable(statistics), docs_index=docs_index,
        seconds=time.perf_counter() - t0, docs_pages=pages,
    )


def _outcome(e: Expectation, r: Any) -> ExpectationOutcome:
    """One rule's outcome from its GX result: failed rows as ``row_id`` positions."""
    res = r.result or {}
    idx = res.get("unexpected_index_list") or []
    exc = r.exception_info or {}
    return ExpectationOutcome(
        **vars(e), success=bool(r.success),
        unexpected_count=int(res.get("unexpected_count") or 0),
        failed_rows=np.array(sorted({int(d[ROW_ID]) for d in idx}), dtype="int64"),
        observed=jsonable(res.get("observed_value")),
        exception=str(exc.get("exception_message")) if exc.get("raised_exception") else None,
    )


def _gx_context(docs: DocsSite | None) -> Any:
    """An ephemeral GX context; with ``docs``, results and the Data Docs site on disk there."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    sites: dict[str, Any] = {}
    if docs is not None:
        defaults.stores[defaults.validation_results_store_name]["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend", "base_directory": docs.results_dir}
        sites = {"lake": {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs.site_dir},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder",
                                   "validation_results_limit": docs.history},
        }}
    config = DataContextConfig(
        store_backend_defaults=defaults,
        data_docs_sites=sites,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _run_gx_suite(ctx: Any, batch: Any, name: str, rules: list[Expectation], frame: pd.DataFrame, run_id: Any) -> Any:
    """One GX validation of ``frame`` against the suite ``name`` built from ``rules``."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    # Built whole and added once: add_expectation re-serialises the stored suite each call.
    gx_suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[
        getattr(gxe, e.gx_type)(**e.kwargs, notes=e.description,
                                meta={"rule": e.rule, "severity": e.severity, "scope": e.scope})
        for e in rules
    ]))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
    return vd.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID],
                       "return_unexpected_index_query": False},
        run_id=run_id,
    )


def _build_docs(ctx: Any, docs: DocsSite, vrids: Mapping[str, Any], lock: Any) -> tuple[str, dict[str, str]]:
    """Build this run's validation pages and the index with GX's site builder, then make them
    offline and link them to ``docs.links``; returns the index and severity -> page paths."""
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    from kline.datadocs import localize_site, relative_url

    with lock:
        suites = [ExpectationSuiteIdentifier(name=suite_name(s)) for s in vrids]
        ctx.build_data_docs(site_names=["lake"], resource_identifiers=[*vrids.values(), *suites])
        pages = {}
        for severity, vrid in vrids.items():
            urls = ctx.get_docs_sites_urls(resource_identifier=vrid, site_name="lake")
            url = urls[0]["site_url"] if urls else None
            if url and url.startswith("file://"):
                pages[severity] = url.removeprefix("file://")
        suite_pages = [f"{docs.site_dir.rstrip('/')}/expectations/{suite_name(s)}.html" for s in vrids]
        index = f"{docs.site_dir.rstrip('/')}/index.html"
        nav = {p: {label: relative_url(os.path.dirname(p), target) for label, target in links.items()}
               for p, links in [*((p, docs.links) for p in pages.values()), (index, docs.index_links)]}
        localize_site(docs.site_dir, [*pages.values(), *suite_pages], nav)
    return index, pages


def _batch_id(result: Any) -> str:
    return str(result.results[0].expectation_config.kwargs.get("batch_id")) if result.results else ""
