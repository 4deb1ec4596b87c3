"""Forecast quality benchmark: walk-forward MASE on the bundled NASDAQ Composite CSV.

Every model goes through the same walk-forward (``kline.backtest.walk_forward``) over the
same held-out XNYS sessions: the LSTM ``default`` preset, the ``seed`` preset (the article's
setup with its leaks fixed), persistence, rolling mean and ridge. MASE < 1 beats the random
walk ("tomorrow = today") on next-session log returns.

    .venv/bin/python benchmarks/bench_quality.py [--csv PATH] [--sessions 1000] \\
        [--retrain-every 60] [--write]

``--write`` replaces the "## Forecast quality" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kline.backtest import attach_realised, score, simulate_all, walk_forward  # noqa: E402
from kline.config import Settings  # noqa: E402
from kline.features import build_features  # noqa: E402
from kline.forecasters import held_out_dates  # noqa: E402
from kline.providers.files import FileProvider  # noqa: E402
from kline.zoo import make_forecaster  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "nasdaq-composite-1999-2018.csv.gz"
SYMBOL, CALENDAR = "IXIC", "XNYS"
SECTION = "## Forecast quality"
# inputs from the close alone, and the whole bar over several horizons (issue: inputs beyond the close)
CLOSE_ONLY = {"features": ("log_return", "volatility_20")}
MULTI_FEATURES = ("log_return", "return_5", "return_20", "hl_range", "open_gap", "log_volume_change",
                  "volume_z_20", "amount_z_20", "volatility_20")


def load_bars(csv: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical bars and adjustment factors through the file provider (Yahoo layout)."""
    p = FileProvider(csv, calendar=CALENDAR)
    start, end = dt.date(1990, 1, 1), dt.date(2030, 1, 1)
    return p.fetch([SYMBOL], start, end), p.fetch_adj_factor([SYMBOL], start, end)


def run(csv: Path, sessions: int, retrain_every: int, models: list[str], seeds: list[int]) -> dict:
    bars, adj = load_bars(csv)
    base = Settings()
    wide = base.replace(features={"features": MULTI_FEATURES})
    # one panel holds every variant's columns; each model reads only its own features
    panel = build_features(bars, wide.features, adj, calendar=CALENDAR)
    test = held_out_dates(panel, sessions)
    variants = {
        "lstm (default)": lambda s: make_forecaster("lstm", base.replace(train={"seed": s})),
        "lstm (close only)": lambda s: make_forecaster("lstm", base.replace(train={"seed": s}, features=CLOSE_ONLY)),
        "lstm (multi-feature)": lambda s: make_forecaster("lstm", wide.replace(train={"seed": s})),
        "lstm (seed preset)": lambda s: make_forecaster("lstm", base.replace(train={"preset": "seed", "seed": s})),
        "persistence": lambda s: make_forecaster("persistence", base),
        "rolling_mean": lambda s: make_forecaster("rolling_mean", base),
        "ridge": lambda s: make_forecaster("ridge", base),
    }
    preds, timing, fits = [], {}, {}
    for name in models:
        multi = name.startswith("lstm") and len(seeds) > 1
        for seed in seeds if multi else seeds[:1]:
            label = f"{name} seed {seed}" if multi else name
            t0 = time.perf_counter()
            p, f = walk_forward(panel, lambda n=name, s=seed: variants[n](s), test, retrain_every, "expanding")
            timing[label] = time.perf_counter() - t0
            fits[label] = len(f)
            preds.append(p.assign(model=label))
            print(f"{label}: {len(f)} fits, {timing[label]:.1f} s", flush=True)
    predictions = attach_realised(pd.concat(preds, ignore_index=True), panel)
    forecast = score(predictions)
    strategy, _ = simulate_all(bars, predictions, base.backtest, {SYMBOL: CALENDAR})
    known = predictions[predictions["realised"].notna()]
    long_share = {m: float((g["pred_return"] > 0).mean()) for m, g in known.groupby("model")}
    first = known[known["model"] == known["model"].iloc[0]]
    return {
        "long_share": long_share,
        "up_share": float((first["realised"] > 0).mean()),
        "bars": len(bars),
        "first": bars["trade_date"].min(),
        "last": bars["trade_date"].max(),
        "test_start": known["trade_date"].min(),
        "test_end": known["trade_date"].max(),
        "sessions": int(known["trade_date"].nunique()),
        "forecast": forecast,
        "strategy": strategy,
        "timing": timing,
        "fits": fits,
    }


def markdown(res: dict, retrain_every: int) -> str:
    f, s = res["forecast"], res["strategy"]
    order = sorted(f, key=lambda m: f[m]["mase"])
    lines = [
        SECTION,
        "",
        f"NASDAQ Composite (`nasdaq-composite-1999-2018.csv.gz`, Yahoo layout, XNYS sessions) via "
        f"the file provider: {res['bars']} bars {res['first']} .. {res['last']}. Walk-forward over the "
        f"last {res['sessions']} sessions with an outcome ({res['test_start']} .. {res['test_end']}), "
        f"expanding window, refit every {retrain_every} sessions, next-session log-return target. "
        "MASE = MAE / MAE of the random walk (predicted return 0) on the same sessions; DM = "
        "Diebold-Mariano vs the random walk, absolute loss (negative = better). Strategy: long/flat "
        "on the sign of the prediction, next open, commission only (a foreign symbol trades as a "
        f"lot-1 tracker). Measured on {platform.machine()} CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {dt.date.today().isoformat()}; "
        "`.venv/bin/python benchmarks/bench_quality.py --write`.",
        "",
        "| model | MASE | RMSE | dir. acc. (p) | pred > 0 | IC | R² oos | DM stat (p) | CAGR | Sharpe | fits | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(x):
        return "–" if x is None or x != x else f"{x * 100:.1f} %"

    def num(x, fmt=".4f"):
        return "–" if x is None or x != x else format(x, fmt)

    for m in order:
        a, b = f[m], s.get(m, {})
        lines.append(
            f"| {m} | {num(a['mase'])} | {num(a['rmse'], '.5f')} | {pct(a['directional_accuracy'])} "
            f"({num(a['da_pvalue'], '.2f')}) | {pct(res['long_share'].get(m))} | {num(a['ic'], '.3f')} | {num(a['r2_oos'])} | "
            f"{num(a['dm_stat'], '.2f')} ({num(a['dm_pvalue'], '.3f')}) | {pct(b.get('cagr'))} | "
            f"{num(b.get('sharpe'), '.2f')} | {res['fits'].get(m, '')} | {num(res['timing'].get(m), '.0f')} |"
        )
    bh = s.get("buy_and_hold", {})
    lines.append(f"| buy_and_hold | | | | | | | | {pct(bh.get('cagr'))} | {num(bh.get('sharpe'), '.2f')} | | |")
    best = order[0]
    lstm = [m for m in f if m.startswith("lstm") and "seed preset" not in m]
    verdict = [f"{res['up_share'] * 100:.1f} % of the held-out sessions closed up, so a model that "
               "is nearly always long scores about that directional accuracy without any skill."]
    for m in sorted(lstm):
        v, p = f[m]["mase"], f[m]["dm_pvalue"]
        verdict.append(
            f"`{m}`: MASE {v:.4f}, "
            + ("below 1.0" if v < 1 else "not below 1.0")
            + f", DM p = {p:.3f} ("
            + ("the difference from the random walk is significant" if p < 0.05 else
               "the difference from the random walk is within noise") + ")."
        )
    for m in sorted(x for x in f if x.startswith("lstm (seed preset)")):
        ratio = f[m]["rmse"] / f["persistence"]["rmse"] if "persistence" in f else float("nan")
        verdict.append(f"`{m}` (the article's setup, leaks fixed): MASE {f[m]['mase']:.2f}, RMSE "
                       f"{ratio:.1f}x persistence's.")
    if lstm:
        verdict.append(
            "Long/flat on the LSTMs' signs: CAGR "
            + ", ".join(pct(s.get(m, {}).get("cagr")) for m in sorted(lstm))
            + f" vs buy-and-hold {pct(bh.get('cagr'))}; the model is long on most days, so the "
            "strategy is buy-and-hold minus the days it steps aside, minus costs.")
    verdict.append(f"Best MASE: {best} ({f[best]['mase']:.4f}).")
    return "\n".join(lines + ["", " ".join(verdict), ""])


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the "## Forecast quality" section, leaving other sections alone."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pat = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pat.sub(lambda _: text + "\n", old) if pat.search(old) else old.rstrip("\n") + "\n\n" + text
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--sessions", type=int, default=1000, help="held-out sessions with an outcome")
    ap.add_argument("--retrain-every", type=int, default=60)
    ap.add_argument("--models", default="lstm (default),lstm (close only),lstm (multi-feature),lstm (seed preset),"
                    "persistence,rolling_mean,ridge")
    ap.add_argument("--seeds", default="1,2,7", help="comma-separated LSTM seeds")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    if not a.csv.exists():
        print(f"CSV not found: {a.csv}", file=sys.stderr)
        return 2
    res = run(a.csv, a.sessions, a.retrain_every, [m.strip() for m in a.models.split(",")],
              [int(x) for x in a.seeds.split(",")])
    text = markdown(res, a.retrain_every)
    print(text)
    if a.write:
        write_section(Path(__file__).with_name("RESULTS.md"), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
