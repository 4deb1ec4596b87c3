"""What the flow and end-to-end tests share: the pipeline's stages and a settings file that
runs every stage in seconds."""

from __future__ import annotations

STAGES = ("ingest", "validate", "features", "train", "backtest", "promote", "forecast", "report")


def fast_config(symbols=("000001.SH", "600519.SH"), provider: str = "synthetic") -> str:
    """kline.toml text: one year of history, a tiny LSTM, no pause between retries."""
    return f"""
symbols = [{", ".join(f'"{s}"' for s in symbols)}]
provider = "{provider}"
[ingest]
history_years = 1
retry_delay_s = 0
[train]
hidden = 8
epochs = 3
patience = 2
test_sessions = 40
[backtest]
retrain_every = 40
"""
