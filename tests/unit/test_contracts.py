"""The expectation suite: every rule passes a clean frame and fails exactly the rows broken
its way, with the real GX engine; derived check columns; schema failures."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from helpers_validation import INDEX, MAIN_BOARD, OTHER, clean_bars

from kline.config import DEFAULT_UNIVERSE, ValidationConfig
from kline.contracts import (
    CRITICAL,
    ROW_ID,
    WARNING,
    ChunkValidationError,
    bar_suite,
    derive_checks,
    run_suite,
)
from kline.instruments import instrument
from kline.providers.synthetic import SyntheticProvider, synthetic_facts
from kline.rules import InstrumentFacts
from kline.schema import to_canonical, to_table

TODAY = dt.date(2024, 3, 15)
CFG = ValidationConfig()
SUITE = bar_suite(CFG, TODAY)
INSTRUMENTS = {s: instrument(s) for s in (MAIN_BOARD, OTHER, INDEX)}
NO_PREVIOUS = pd.DataFrame({"symbol": [], "trade_date": [], "close": []})


def _frame(bars: pd.DataFrame, today: dt.date = TODAY, previous: pd.DataFrame = NO_PREVIOUS) -> pd.DataFrame:
    # Through Arrow, as the lake hands bars to validation.
    return derive_checks(to_table(bars).to_pandas(), INSTRUMENTS, previous, today)


def _run(frame: pd.DataFrame, today: dt.date = TODAY):
    out = run_suite(frame, bar_suite(CFG, today), run_name="test")
    return {o.rule: o for o in out.outcomes}, out


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return clean_bars()


@pytest.fixture(scope="module")
def clean_outcomes(clean):
    return _run(_frame(clean))[0]


def _rows(clean: pd.DataFrame, symbol: str, *positions: int) -> list[int]:
    return [int(clean.index[clean["symbol"] == symbol][p]) for p in positions]


def test_suite_rules_are_unique_and_cover_the_issue():
    rules = [e.rule for e in SUITE]
    assert len(rules) == len(set(rules))
    assert {"unique_symbol_trade_date", "price_limit", "trading_session", "not_in_future",
            "high_ge_low", "positive_close", "non_negative_volume"} <= set(rules)
    assert {e.rule for e in SUITE if e.severity == WARNING} == {
        "index_move", "pre_close_matches_previous_close", "no_missing_sessions", "volume_not_zero"}


def test_clean_frame_passes_every_rule(clean_outcomes):
    failed = {r: o.failed_rows.tolist() for r, o in clean_outcomes.items() if not o.success}
    assert failed == {}


# rule -> function(frame copy, clean) that breaks chosen rows and returns their positions
def _set(col, value, symbol=MAIN_BOARD, positions=(3, 7)):
    def brk(df, clean):
        rows = _rows(clean, symbol, *positions)
        df.loc[rows, col] = value
        return rows
    return brk


def _pair(col, other_col, delta, symbol=OTHER, positions=(2, 9)):
    def brk(df, clean):
        rows = _rows(clean, symbol, *positions)
        df.loc[rows, col] = df.loc[rows, other_col] + delta
        return rows
    return brk


def _weekend(df, clean):
    rows = _rows(clean, OTHER, 5)
    d = df.at[rows[0], "trade_date"]
    df.loc[rows, "trade_date"] = d + dt.timedelta(days=5 - d.weekday())  # that week's Saturday
    return rows


def _future(df, clean):
    # Two sessions after TODAY on every symbol: rows dated after today.
    for s in clean["symbol"].unique():
        last = clean.index[clean["symbol"] == s][-1]
        df.loc[last, "trade_date"] = dt.date(2024, 3, 19)
    return [int(clean.index[clean["symbol"] == s][-1]) for s in clean["symbol"].unique()]


def _limit(df, clean):
    rows = _rows(clean, MAIN_BOARD, 4)
    df.loc[rows, "close"] = (df.loc[rows, "pre_close"] * 1.12).round(2)
    df.loc[rows, "high"] = df.loc[rows, ["high", "close"]].max(axis=1)
    return rows


def _index_move(df, clean):
    rows = _rows(clean, INDEX, 6)
    df.loc[rows, "close"] = (df.loc[rows, "pre_close"] * 0.87).round(2)
    df.loc[rows, "low"] = df.loc[rows, ["low", "close"]].min(axis=1)
    return rows


def _pre_close(df, clean):
    rows = _rows(clean, OTHER, 5)
    df.loc[rows, "pre_close"] = df.loc[rows, "pre_close"] * 0.97  # ex-dividend style
    return rows


def _duplicate(df, clean):
    rows = _rows(clean, MAIN_BOARD, 5)
    df.loc[rows[0] + 1, ["symbol", "trade_date"]] = df.loc[rows[0], ["symbol", "trade_date"]].to_list()
    return [rows[0], rows[0] + 1]


def _exchange_limit(df, clean):
    """The exchange published limit prices below two closes (and a wide band on another
    row that the board rule would have rejected): facts, not the board, judge those rows."""
    rows = _rows(clean, OTHER, 3, 4, 5)
    lim = pd.DataFrame({"symbol": OTHER, "trade_date": df.loc[rows, "trade_date"].to_numpy(),
                        "up_limit": (df.loc[rows, "close"] - [0.02, 0.01, -50]).to_numpy(),
                        "down_limit": 1.0, "source": "test"})
    df.loc[rows[2], "close"] = round(df.loc[rows[2], "pre_close"] * 1.11, 2)
    df.loc[rows[2], "high"] = max(df.loc[rows[2], "high"], df.loc[rows[2], "close"])
    if df.loc[rows[2], "close"] > lim.loc[2, "up_limit"]:
        lim.loc[2, "up_limit"] = df.loc[rows[2], "close"]
    return rows[:2], InstrumentFacts(stk_limit=lim)


DROP = "DROP"  # a break marks rows to remove with this symbol


def _missing(df, clean):
    rows = _rows(clean, INDEX, 6, 7)  # drop the 7th bar: the 8th follows a hole
    df.loc[rows[1], "symbol"] = DROP
    return [rows[1] + 1]


BREAKS = {
    "not_null_symbol": _set("symbol", None),
    "not_null_trade_date": _set("trade_date", None),
    "not_null_open": _set("open", np.nan),
    "not_null_high": _set("high", np.nan),
    "not_null_low": _set("low", np.nan),
    "not_null_close": _set("close", np.nan),
    "unique_symbol_trade_date": _duplicate,
    "positive_open": _set("open", -1.0),
    "positive_high": _set("high", 0.0),
    "positive_low": _set("low", -3.0),
    "positive_close": _set("close", 0.0),
    "positive_pre_close": _set("pre_close", -2.0),
    "non_negative_volume": _set("volume", -100.0),
    "non_negative_amount": _set("amount", -1.0),
    "high_ge_open": _pair("open", "high", 0.5),
    "high_ge_close": _pair("close", "high", 0.5),
    "high_ge_low": _pair("low", "high", 0.5),
    "low_le_open": _pair("open", "low", -0.5),
    "low_le_close": _pair("close", "low", -0.5),
    "trading_session": _weekend,
    "not_in_future": _future,
    "price_limit": _limit,
    "exchange_price_limit": _exchange_limit,
    "index_move": _index_move,
    "pre_close_matches_previous_close": _pre_close,
    "no_missing_sessions": _missing,
    "volume_not_zero": _set("volume", 0.0, symbol=OTHER),
}


def test_every_row_rule_has_a_break():
    assert set(BREAKS) == {e.rule for e in SUITE if e.scope == "row"}


@pytest.mark.parametrize("rule", sorted(BREAKS))
def test_rule_fails_on_exactly_the_broken_rows(rule, clean, clean_outcomes):
    assert clean_outcomes[rule].success
    df = clean.copy()
    broken = BREAKS[rule](df, clean)
    broken, facts = broken if isinstance(broken, tuple) else (broken, None)
    df = df[df["symbol"] != DROP]
    # The derived frame is re-sorted; map broken original rows to its row ids by key + values.
    bars = to_table(df).to_pandas().assign(_orig=df.index.to_numpy())
    frame = derive_checks(bars, INSTRUMENTS, NO_PREVIOUS, TODAY, facts)
    expected = sorted(frame.loc[frame["_orig"].isin(broken), ROW_ID].tolist())
    frame = frame.drop(columns="_orig")
    outcomes, _ = _run(frame)
    assert not outcomes[rule].success
    assert outcomes[rule].failed_rows.tolist() == expected


def test_synthetic_limit_days_and_rounding_are_not_critical():
    # A limit-up day on a cheap stock: the limit price is rounded to the cent.
    bars = clean_bars((MAIN_BOARD,)).iloc[:3].copy()
    cols = ["pre_close", "open", "high", "low", "close"]
    bars.loc[0, cols] = [4.30, 4.30, 4.37, 4.30, 4.37]
    bars.loc[1, cols] = [4.37, 4.50, 4.81, 4.45, 4.81]  # limit up: 4.37 * 1.1 = 4.807 -> 4.81
    bars.loc[2, cols] = [4.81, 4.81, 4.85, 4.70, 4.75]
    frame = _frame(bars)
    assert frame["chk_limit_excess"].iloc[1] == pytest.approx(4.81 / 4.37 - 1.1)
    outcomes, _ = _run(frame)
    assert outcomes["price_limit"].success


def test_ten_years_of_the_default_universe_have_no_critical_failure():
    bars = SyntheticProvider().fetch(list(DEFAULT_UNIVERSE), dt.date(2014, 1, 1), dt.date(2023, 12, 31))
    bars = to_table(to_canonical(bars, "synthetic")).to_pandas()
    insts = {s: instrument(s) for s in DEFAULT_UNIVERSE}
    facts = synthetic_facts(SyntheticProvider().seed, DEFAULT_UNIVERSE)
    frame = derive_checks(bars, insts, NO_PREVIOUS, dt.date(2024, 1, 1), facts)
    # The synthetic market does hit its limits and suspend stocks in these years.
    assert (frame["chk_limit_excess"] > -0.001).sum() > 10
    assert (frame["chk_sessions_missing"] > 0).sum() > 5
    outcomes, out = _run(frame, dt.date(2024, 1, 1))
    critical = {r: o.unexpected_count for r, o in outcomes.items() if o.severity == CRITICAL and not o.success}
    assert critical == {}
    assert not outcomes["no_missing_sessions"].success  # suspensions are warnings
    # Without the listing dates, the listing days' pops break the board rule.
    frame = derive_checks(bars, insts, NO_PREVIOUS, dt.date(2024, 1, 1))
    over = frame[frame["chk_limit_excess"] > ValidationConfig().limit_tolerance]
    listed = facts.listings.set_index("symbol")["list_date"]
    assert set(zip(over["symbol"], over["trade_date"], strict=True)) == {
        (s, listed[s]) for s in ("300750.SZ", "688981.SH")}


def test_first_row_compares_with_the_previous_curated_bar(clean):
    feb = clean[clean["symbol"] == OTHER].reset_index(drop=True)
    prev = pd.DataFrame({"symbol": [OTHER], "trade_date": [dt.date(2024, 1, 31)],
                         "close": [feb.at[0, "pre_close"]]})
    frame = derive_checks(to_table(feb).to_pandas(), INSTRUMENTS, prev, TODAY)
    assert frame.at[0, "chk_pre_close_diff"] == 0.0 and frame.at[0, "chk_sessions_missing"] == 0.0
    # An older previous bar: the sessions between it and 1 Feb are missing.
    prev.loc[0, "trade_date"] = dt.date(2024, 1, 26)  # Fri; 29, 30, 31 Jan are sessions
    frame = derive_checks(to_table(feb).to_pandas(), INSTRUMENTS, prev, TODAY)
    assert frame.at[0, "chk_sessions_missing"] == 3.0
    # Without one, the first row is not judged.
    frame = _frame(feb)
    assert np.isnan(frame.at[0, "chk_pre_close_diff"]) and np.isnan(frame.at[0, "chk_sessions_missing"])


def test_foreign_symbol_uses_its_own_calendar():
    bars = to_table(clean_bars((OTHER,)).iloc[:2].assign(symbol="SPX")).to_pandas()
    bars.loc[:, "trade_date"] = [dt.date(2024, 7, 4), dt.date(2024, 7, 5)]  # US holiday, session
    frame = derive_checks(bars, {"SPX": instrument("SPX", calendar="XNYS")}, NO_PREVIOUS, TODAY.replace(year=2025))
    assert frame["chk_is_session"].tolist() == [False, True]
    assert frame["chk_limit_excess"].isna().all()  # no price limit


@pytest.mark.parametrize("change, rule", [
    (lambda df: df.drop(columns="amount"), "schema_columns"),
    (lambda df: df.assign(extra=1.0), "schema_columns"),
    (lambda df: df.assign(volume=df["volume"].astype("int64")), "schema_type_volume"),
    (lambda df: df.assign(ingested_at=df["ingested_at"].dt.tz_localize(None)), "schema_type_ingested_at"),
])
def test_schema_failures_reject_the_whole_chunk(clean, change, rule):
    bars = change(to_table(clean).to_pandas())
    _, out = _run(derive_checks(bars, INSTRUMENTS, NO_PREVIOUS, TODAY))
    assert rule in out.chunk_failures()
    assert rule in str(ChunkValidationError(out.chunk_failures()))
