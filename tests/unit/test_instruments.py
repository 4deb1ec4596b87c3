import pytest

from kline.instruments import SymbolError, instrument, validate_symbol


def test_sse_composite_is_never_ping_an_bank():
    idx, bank = instrument("000001.SH"), instrument("000001.SZ")
    assert (idx.asset_type, idx.exchange, idx.board, idx.price_limit) == ("index", "SSE", "index", None)
    assert (bank.asset_type, bank.exchange, bank.board, bank.price_limit) == ("stock", "SZSE", "main", 0.10)


@pytest.mark.parametrize(
    "symbol, asset, board, limit",
    [
        ("600519.SH", "stock", "main", 0.10),
        ("000300.SH", "index", "index", None),
        ("399001.SZ", "index", "index", None),
        ("300750.SZ", "stock", "chinext", 0.20),
        ("688981.SH", "stock", "star", 0.20),
        ("430047.BJ", "stock", "bse", 0.30),
    ],
)
def test_boards_and_limits(symbol, asset, board, limit):
    inst = instrument(symbol)
    assert (inst.asset_type, inst.board, inst.price_limit, inst.calendar) == (asset, board, limit, "XSHG")


def test_st_stock_has_five_percent_limit():
    assert instrument("600001.SH", st=True).price_limit == 0.05


@pytest.mark.parametrize("bad", ["../x", "a/b", "600519", "600519.SS", "", "60051.SH", "600519.sh "])
def test_ill_formed_symbols(bad):
    with pytest.raises(SymbolError):
        validate_symbol(bad)


def test_foreign_ticker_needs_a_calendar_and_is_never_a_path():
    with pytest.raises(SymbolError, match="give its exchange calendar"):
        instrument("SPX")
    spx = instrument("SPX", calendar="XNYS")
    assert (spx.calendar, spx.price_limit, spx.lot_size) == ("XNYS", None, 1)
    for bad in ["../SPX", "a/b", "..", "SPX/.."]:
        with pytest.raises(SymbolError):
            validate_symbol(bad, allow_foreign=True)
