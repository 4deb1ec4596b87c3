import datetime as dt

import pytest

from kline.config import Settings
from kline.providers.synthetic import SyntheticProvider, synthetic_facts, synthetic_universe
from kline.universe import (
    UniverseError,
    check_universe,
    resolve_universe,
    static_codes,
    with_universe,
)


def test_default_list_and_file_universes_are_static(tmp_path):
    s = Settings(symbols=("600519.SH", "000001.SZ"))
    assert static_codes(s) == ("600519.SH", "000001.SZ")  # default: the symbols setting
    assert static_codes(s.replace(universe=["300750.SZ", "300750.SZ", "688981.SH"])) == ("300750.SZ", "688981.SH")
    f = tmp_path / "codes.txt"
    f.write_text("# my names\n600519.SH\n\n000001.SZ  # a bank\n")
    assert static_codes(s.replace(universe=f"file:{f}")) == ("600519.SH", "000001.SZ")
    assert with_universe(s.replace(universe=f"file:{f}"), None, dt.date(2024, 1, 2)).symbols == ("600519.SH", "000001.SZ")


@pytest.mark.parametrize("universe, provider, words", [
    ("csi500", "synthetic", "unknown value 'csi500'"),
    ("file:/nowhere/codes.txt", "synthetic", "file not found"),
    (["600519.SH", "../etc"], "synthetic", "universe:"),
    ("csi300", "file", "needs a market provider"),
])
def test_a_bad_universe_is_refused_naming_it(universe, provider, words):
    with pytest.raises(UniverseError, match="universe") as err:
        check_universe(Settings(provider=provider, universe=universe))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_an_empty_universe_file_is_refused(tmp_path):
    f = tmp_path / "codes.txt"
    f.write_text("# nothing yet\n")
    with pytest.raises(UniverseError, match="lists no code"):
        check_universe(Settings(universe=f"file:{f}"))


def test_synthetic_market_universes_are_point_in_time():
    p = SyntheticProvider()
    early = resolve_universe(Settings(universe="csi300"), p, dt.date(2012, 6, 1))
    late = resolve_universe(Settings(universe="csi300"), p, dt.date(2025, 6, 1))
    assert set(early) < set(late) <= set(synthetic_universe(300))  # names join as they list
    listed = dict(zip(late, synthetic_facts(p.seed, late).listings["list_date"], strict=True))
    assert all(listed[s] <= dt.date(2012, 6, 1) for s in early)
    assert any(d > dt.date(2012, 6, 1) for d in listed.values())
    everything = resolve_universe(Settings(universe="all"), p, dt.date(2000, 1, 4), dt.date(2026, 12, 31))
    assert len(everything) == 5000 and len(set(everything)) == 5000
    # a span covers every name listed by its end, and those delisted inside it
    span = resolve_universe(Settings(universe="csi300"), p, dt.date(2012, 6, 1), dt.date(2025, 6, 1))
    gone = {s for s, d in synthetic_facts(p.seed, span).listings[["symbol", "delist_date"]].itertuples(index=False)
            if d is not None and d < dt.date(2025, 6, 1)}
    assert gone and set(span) - set(late) == gone and set(late) <= set(span) and span == sorted(span)


def test_synthetic_all_leaves_a_stock_out_after_its_delisting():
    p = SyntheticProvider()
    facts = synthetic_facts(p.seed, synthetic_universe(5000)).listings
    gone = facts.dropna(subset=["delist_date"])
    assert 0.01 * 5000 < len(gone) < 0.06 * 5000  # a few percent delist inside the history
    sym, listed, delisted = gone.sort_values("delist_date").iloc[len(gone) // 2][["symbol", "list_date", "delist_date"]]
    before = resolve_universe(Settings(universe="all"), p, delisted - dt.timedelta(days=1))
    after = resolve_universe(Settings(universe="all"), p, delisted + dt.timedelta(days=1))
    assert sym in before and sym not in after
    assert set(gone.loc[gone["delist_date"] < delisted, "symbol"]).isdisjoint(before)
    # a span that reaches back before the delisting keeps the name (no survivorship bias)
    assert sym in resolve_universe(Settings(universe="all"), p, delisted - dt.timedelta(days=30),
                                   delisted + dt.timedelta(days=30))
    assert listed < delisted
