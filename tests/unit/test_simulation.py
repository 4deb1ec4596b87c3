import dataclasses
import datetime as dt

import pandas as pd
import pytest

from kline.config import BacktestConfig
from kline.rules import InstrumentFacts, Limit
from kline.simulation import buy_and_hold_signal, simulate, simulate_predictions

D = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8)]  # consecutive XSHG sessions
STOCK = "600519.SH"  # main board: +/-10 %, lot 100, stamp duty
CFG = BacktestConfig(capital=10_000.0, execution="next_open")


def bars(rows, symbol=STOCK):
    """rows: (date, open, close, pre_close)."""
    return pd.DataFrame(
        [{"symbol": symbol, "trade_date": d, "open": o, "close": c, "pre_close": p} for d, o, c, p in rows]
    )


def signal(*pairs):
    return pd.Series([v for _, v in pairs], index=[d for d, _ in pairs])


def test_round_trip_pnl_min_commission_and_t_plus_1():
    b = bars([(D[0], 10, 10, 10), (D[1], 10, 10.5, 10), (D[2], 10.8, 11, 10.5)])
    r = simulate(b, signal((D[0], True), (D[1], False)), CFG)
    buy, sell = r.trades.iloc[0], r.trades.iloc[1]
    # buy 900 shares at D1's open: 10000 / (10 * 1.00026) = 999.7 -> 9 lots
    assert (buy.trade_date, buy.side, buy.shares, buy.price) == (D[1], "buy", 900, 10)
    assert buy.commission == pytest.approx(5.0)  # 0.025 % of 9000 = 2.25 < minimum 5
    assert buy.transfer_fee == pytest.approx(0.09)
    assert buy.stamp_duty == 0
    # T+1: the shares are sold the session after, at its open
    assert (sell.trade_date, sell.side, sell.shares, sell.price) == (D[2], "sell", 900, 10.8)
    assert sell.stamp_duty == pytest.approx(4.86)  # 0.05 % of 9720
    assert sell.commission == pytest.approx(5.0)
    cash_after_buy = 10_000 - 9000 - 5.09
    assert r.equity.loc[D[0]] == pytest.approx(10_000)
    assert r.equity.loc[D[1]] == pytest.approx(cash_after_buy + 900 * 10.5)
    final = cash_after_buy + 9720 - 5 - 0.0972 - 4.86
    assert r.equity.loc[D[2]] == pytest.approx(final)
    assert r.round_trips == [pytest.approx(final - 10_000)]
    assert r.costs == pytest.approx(5.09 + 5 + 0.0972 + 4.86)
    assert r.metrics()["blocked_t_plus_1"] == 0


def test_next_close_execution_holds_at_least_one_night():
    b = bars([(D[0], 10, 10, 10), (D[1], 10, 10.5, 10), (D[2], 10.8, 11, 10.5)])
    cfg = dataclasses.replace(CFG, execution="next_close")
    r = simulate(b, signal((D[0], True), (D[1], False)), cfg)
    assert list(zip(r.trades.trade_date, r.trades.side, r.trades.price, strict=True)) == [
        (D[1], "buy", 10.5), (D[2], "sell", 11.0)]
    assert r.trades.shares.tolist() == [900, 900]  # 10000 / 10.5 -> 952 -> 9 lots


def test_no_buy_at_limit_up_then_buy_next_session():
    # D1 opens at the limit-up price 11.00 (pre_close 10): the buy cannot fill
    b = bars([(D[0], 10, 10, 10), (D[1], 11.0, 11.0, 10), (D[2], 11.5, 11.6, 11.0)])
    r = simulate(b, signal((D[0], True), (D[1], True), (D[2], True)), CFG)
    assert r.blocked.to_dict("records") == [{"trade_date": D[1], "side": "buy", "reason": "limit_up"}]
    assert r.trades.trade_date.tolist() == [D[2]]
    assert r.equity.loc[D[1]] == pytest.approx(10_000)  # still flat through the limit-up day


def test_no_sell_at_limit_down():
    b = bars([(D[0], 10, 10, 10), (D[1], 10, 10, 10), (D[2], 9.0, 9.2, 10), (D[3], 9.1, 9.3, 9.2)])
    r = simulate(b, signal((D[0], True), (D[1], False), (D[2], False)), CFG)
    assert r.blocked.to_dict("records") == [{"trade_date": D[2], "side": "sell", "reason": "limit_down"}]
    assert r.trades.side.tolist() == ["buy", "sell"]
    assert r.trades.trade_date.tolist() == [D[1], D[3]]
    assert r.trades.price.tolist() == [10, 9.1]


def test_suspension_lapses_the_order():
    # no row on D1 (suspended): the buy decided at D0's close lapses; the D2 decision buys on D3
    b = bars([(D[0], 10, 10, 10), (D[2], 10.2, 10.4, 10), (D[3], 10.5, 10.6, 10.4)])
    r = simulate(b, signal((D[0], True), (D[2], True)), CFG)
    assert r.blocked.to_dict("records") == [{"trade_date": D[1], "side": "buy", "reason": "suspended"}]
    assert r.trades.trade_date.tolist() == [D[3]]
    assert r.equity.index.tolist() == [D[0], D[2], D[3]]


def test_index_is_a_tracker_lot_one_no_stamp_duty():
    b = bars([(D[0], 3000, 3000, 3000), (D[1], 3000, 3300, 3000), (D[2], 3500, 3400, 3300)], "000001.SH")
    r = simulate(b, signal((D[0], True), (D[1], False)), CFG)
    buy, sell = r.trades.iloc[0], r.trades.iloc[1]
    assert buy.shares == 3  # lot size 1; 10000 / 3000 -> 3 units
    assert sell.price == 3500  # +16.7 % open: indices have no price limit
    assert (buy.transfer_fee, sell.stamp_duty, sell.transfer_fee) == (0, 0, 0)
    assert r.equity.loc[D[2]] == pytest.approx(10_000 - 9000 - 5 + 10_500 - 5.0)


def test_large_order_pays_rate_not_minimum():
    b = bars([(D[0], 10, 10, 10), (D[1], 10, 10, 10)])
    r = simulate(b, signal((D[0], True)), dataclasses.replace(CFG, capital=1_000_000.0))
    buy = r.trades.iloc[0]
    assert buy.shares == 99_900
    assert buy.commission == pytest.approx(999_000 * 0.00025)
    assert buy.cash_after == pytest.approx(1_000_000 - 999_000 - 249.75 - 9.99)


def test_limit_prices_round_to_tick():
    assert Limit(0.10, 0.10, "main board").prices(10.05) == (9.05, 11.06)  # 11.055 -> 11.06 on the float
    assert Limit(None, None, "listing").prices(10.0) == (float("-inf"), float("inf"))
    assert Limit(0.10, 0.10, "stk_limit", up_price=11.0, down_price=9.1).prices(10.05) == (9.1, 11.0)


def test_portfolio_and_buy_and_hold_benchmark():
    b1 = bars([(D[0], 10, 10, 10), (D[1], 10, 11, 10), (D[2], 11, 12, 11)])
    b2 = bars([(D[0], 3000, 3000, 3000), (D[1], 3000, 3000, 3000), (D[2], 3000, 2700, 3000)], "000001.SH")
    allbars = pd.concat([b1, b2], ignore_index=True)
    preds = pd.DataFrame({"symbol": [STOCK, STOCK, "000001.SH", "000001.SH"],
                          "trade_date": [D[0], D[1], D[0], D[1]],
                          "pred_return": [0.01, -0.01, -0.02, -0.01]})
    r = simulate_predictions(allbars, preds, CFG)
    # the stock sleeve buys at D1 open (900 @ 10) and sells at D2 open @ 11; the index stays flat
    stock_end = 10_000 - 9000 - 5.09 + 9900 - 5 - 0.099 - 4.95
    assert r.equity.loc[D[2]] == pytest.approx(stock_end + 10_000)
    bh = simulate_predictions(allbars, buy_and_hold_signal(preds), CFG)
    assert (bh.trades.side == "buy").sum() == 2 and (bh.trades.side == "sell").sum() == 0
    index_end = 10_000 - 9000 - 5 + 3 * 2700
    stock_bh = 10_000 - 9000 - 5.09 + 900 * 12
    assert bh.equity.loc[D[2]] == pytest.approx(index_end + stock_bh)


def adj_bars(rows, symbol=STOCK):
    """rows: (date, open, close, pre_close, adj_factor)."""
    return pd.DataFrame([{"symbol": symbol, "trade_date": d, "open": o, "close": c, "pre_close": p, "adj_factor": f}
                         for d, o, c, p, f in rows])


def test_bonus_issue_and_cash_dividend_are_no_pnl_events():
    # D2: 10-for-10 bonus issue (raw price halves, factor doubles); D3: 0.5 cash dividend per
    # share (ex-rights reference 9.5). Prices do not move otherwise: equity must not either.
    rows = [(D[0], 20, 20, 20, 1.0), (D[1], 20, 20, 20, 1.0), (D[2], 10, 10, 10, 2.0),
            (D[3], 9.5, 9.5, 9.5, 2.0 * 10 / 9.5), (D[4], 9.5, 9.975, 9.5, 2.0 * 10 / 9.5)]
    r = simulate(adj_bars(rows), signal((D[0], True), (D[1], True), (D[2], True), (D[3], True)), CFG)
    assert r.trades.side.tolist() == ["buy"] and r.trades.shares.tolist() == [400]
    after_buy = r.equity.loc[D[1]]
    assert r.equity.loc[D[2]] == pytest.approx(after_buy)  # bonus shares: 800 shares at 10
    assert r.equity.loc[D[3]] == pytest.approx(after_buy)  # dividend reinvested at 9.5
    assert r.position.loc[D[2]] == pytest.approx(800)
    # a real move after the ex-dates is P&L on the whole (grown) holding: +5 % of 8000
    assert r.equity.loc[D[4]] - r.equity.loc[D[3]] == pytest.approx(8000 * 0.05)
    # without the factor, the same raw bars show the bonus issue as a 4000 CNY loss
    raw = simulate(adj_bars(rows).drop(columns="adj_factor"), signal((D[0], True), (D[1], True)), CFG)
    assert raw.equity.loc[D[2]] == pytest.approx(after_buy - 400 * 10)


def test_t_plus_1_binds_a_strategy_that_would_round_trip_in_one_session():
    b = bars([(D[0], 10, 10, 10), (D[1], 10, 10.4, 10), (D[2], 10.2, 10.3, 10.4), (D[3], 10.3, 10.3, 10.3)])
    cfg = dataclasses.replace(CFG, execution="open_to_close")
    r = simulate(b, signal((D[0], True), (D[1], False), (D[2], False)), cfg)
    # bought at D1's open, meant to sell at D1's close: T+1 forbids it, it sells at D2's open
    assert r.blocked.to_dict("records") == [{"trade_date": D[1], "side": "sell", "reason": "t_plus_1"}]
    assert list(zip(r.trades.trade_date, r.trades.side, r.trades.price, strict=True)) == [
        (D[1], "buy", 10), (D[2], "sell", 10.2)]
    assert r.metrics()["blocked_t_plus_1"] == 1
    assert r.position.loc[D[1]] == 900  # held overnight


def test_limit_up_is_dated_chinext_fills_at_plus_15_percent_only_after_the_reform():
    def one(days):
        b = bars([(days[0], 10, 10, 10), (days[1], 11.5, 11.5, 10), (days[2], 11.5, 11.6, 11.5)], symbol="300750.SZ")
        return simulate(b, signal((days[0], True), (days[1], True)), CFG)

    old = one([dt.date(2019, 3, 4), dt.date(2019, 3, 5), dt.date(2019, 3, 6)])
    new = one([dt.date(2021, 3, 1), dt.date(2021, 3, 2), dt.date(2021, 3, 3)])
    # 11.5 is beyond the 2019 limit-up (11.00): no fill; in 2021 the limit-up is 12.00
    assert old.blocked.reason.tolist() == ["limit_up"] and old.trades.trade_date.tolist() == [dt.date(2019, 3, 6)]
    assert new.blocked.empty and new.trades.trade_date.tolist() == [dt.date(2021, 3, 2)]


def test_delisted_position_closes_at_its_last_price_and_suspensions_are_counted():
    facts = InstrumentFacts(listings=pd.DataFrame([{"symbol": STOCK, "list_date": dt.date(2001, 8, 27),
                                                    "delist_date": D[4], "source": "test"}]))
    b = bars([(D[0], 10, 10, 10), (D[1], 10, 10, 10), (D[3], 9, 9.5, 10)])  # D2 suspended, D3 last bar
    r = simulate(b, signal((D[0], True), (D[1], False), (D[3], False)), CFG, facts=facts)
    assert r.blocked.to_dict("records") == [{"trade_date": D[2], "side": "sell", "reason": "suspended"}]
    assert r.trades.side.tolist() == ["buy", "delist"]
    last = r.trades.iloc[-1]
    assert (last.trade_date, last.price, last.shares) == (D[3], 9.5, 900)
    assert r.position.loc[D[3]] == 0 and r.equity.loc[D[3]] == pytest.approx(last.cash_after)
    m = r.metrics()
    assert (m["delisted"], m["blocked_suspended"]) == (1, 1)
    # without the delisting fact, the position is simply still held
    assert simulate(b, signal((D[0], True)), CFG).metrics()["delisted"] == 0


def test_predictions_trade_on_adjusted_holdings_from_an_adj_factor_frame():
    b = bars([(D[0], 20, 20, 20), (D[1], 20, 20, 20), (D[2], 10, 10, 10)])
    adj = pd.DataFrame({"symbol": STOCK, "trade_date": D[:3], "adj_factor": [1.0, 1.0, 2.0]})
    preds = pd.DataFrame({"symbol": STOCK, "trade_date": D[:2], "pred_return": [0.01, 0.01]})
    r = simulate_predictions(b, preds, CFG, adj_factor=adj)
    assert r.equity.loc[D[2]] == pytest.approx(r.equity.loc[D[1]])
