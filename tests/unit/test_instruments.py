import pytest

from kline.instruments import SymbolError, instrument, validate_symbol


def test_sse_composite_is_never_ping_an_bank():
    idx, bank = instrument("000001.SH"), instrument("000001.SZ")
    assert (idx.asset_type, idx.exchange, idx.board, idx.lot_size) == ("index", "SSE", "index", 1)
    assert (bank.asset_type, bank.exchange, bank.board, bank.lot_size) == ("stock", "SZSE", "main", 100)


@pytest.mark.parametrize(
    "symbol, asset, board",
    [
        ("600519.SH", "stock", "main"),
        ("000300.SH", "index", "index"),
        ("399001.SZ", "index", "index"),
        ("300750.SZ", "stock", "chinext"),
        ("301001.SZ", "stock", "chinext"),
        ("688981.SH", "stock", "star"),
        ("430047.BJ", "stock", "bse"),
    ],
)
def test_boards(symbol, asset, board):
    inst = instrument(symbol)
    assert (inst.asset_type, inst.board, inst.calendar) == (asset, board, "XSHG")


@pytest.mark.parametrize("bad", ["../x", "a/b", "600519", "600519.SS", "", "60051.SH", "600519.sh "])
def test_ill_formed_symbols(bad):
    with pytest.raises(SymbolError):
        validate_symbol(bad)


def test_foreign_ticker_needs_a_calendar_and_is_never_a_path():
    with pytest.raises(SymbolError, match="give its exchange calendar"):
        instrument("SPX")
    spx = instrument("SPX", calendar="XNYS")
    assert (spx.calendar, spx.board, spx.lot_size) == ("XNYS", "foreign", 1)
    for bad in ["../SPX", "a/b", "..", "SPX/.."]:
        with pytest.raises(SymbolError):
            validate_symbol(bad, allow_foreign=True)
