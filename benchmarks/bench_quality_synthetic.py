"""Cross-sectional quality on the synthetic market with a planted signal (issue 16).

A universe of ``--stocks`` synthetic stocks (``synthetic_universe``) with the planted signal
``--signal`` (``kline.providers.synthetic``), features beyond the close, and each model's
walk-forward (``kline.backtest.walk_forward``: expanding window, refit every
``--retrain-every`` sessions) over the last ``--sessions`` sessions; then the
cross-sectional figures of ``kline.crosssection``: daily IC / rank IC (mean, ICIR, t) and a
TopkDropout portfolio (``--k``, ``--n-drop``, A-share costs) against the equal-weight universe.
``volume_z_20`` is the planted feature itself used as the score (no fit): the ceiling a model
can reach through that feature.

    .venv/bin/python benchmarks/bench_quality_synthetic.py [--stocks 300] [--signal 0.1] \\
        [--models volume_z_20,ridge,persistence] [--write]

``--write`` replaces the "## Cross-sectional quality (synthetic, planted signal)" section of
benchmarks/RESULTS.md.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kline.backtest import attach_realised, walk_forward  # noqa: E402
from kline.config import Settings  # noqa: E402
from kline.crosssection import evaluate_cross_section  # noqa: E402
from kline.features import build_features  # noqa: E402
from kline.forecasters import held_out_dates  # noqa: E402
from kline.providers.synthetic import SyntheticProvider, synthetic_facts, synthetic_universe  # noqa: E402
from kline.zoo import make_forecaster  # noqa: E402

SECTION = "## Cross-sectional quality (synthetic, planted signal)"
FEATURES = ("log_return", "return_5", "hl_range", "open_gap", "volume_z_20", "amount_z_20",
            "rank_log_return", "rank_volume_z_20")


def run(stocks: int, signal: float, start: dt.date, end: dt.date, sessions: int, retrain_every: int,
        models: list[str], k: int, n_drop: int, seed: int) -> dict:
    t0 = time.perf_counter()
    syms = synthetic_universe(stocks)
    provider = SyntheticProvider(seed=seed, signal=signal)
    bars = provider.fetch(syms, start, end)
    settings = Settings().replace(features={"features": FEATURES, "window": 10},
                                  train={"epochs": 15, "hidden": 16, "patience": 4})
    panel = build_features(bars, settings.features)
    prep_s = time.perf_counter() - t0
    test = held_out_dates(panel, sessions)
    facts = synthetic_facts(provider.seed, syms)
    out: dict = {"rows": {}, "wall": {}, "fits": {}}
    for name in models:
        t1 = time.perf_counter()
        if name == "volume_z_20":
            p = panel[panel["trade_date"].isin(set(test))][["symbol", "trade_date", "target_date", "volume_z_20"]]
            p = p.rename(columns={"volume_z_20": "pred_return"}).dropna()
            fits = 0
        else:
            p, f = walk_forward(panel, lambda n=name: make_forecaster(n, settings), test, retrain_every)
            fits = len(f)
        p = attach_realised(p, panel)
        out["rows"][name] = evaluate_cross_section(p, bars, k=k, n_drop=n_drop, facts=facts)
        out["wall"][name] = time.perf_counter() - t1
        out["fits"][name] = fits
        print(f"{name}: {out['wall'][name]:.1f} s", flush=True)
    out.update(stocks=stocks, signal=signal, bars=len(bars), prep_s=prep_s, start=start, end=end,
               test_start=min(test), test_end=max(test), sessions=len(test), k=k, n_drop=n_drop,
               retrain_every=retrain_every, seed=seed)
    return out


def markdown(res: dict) -> str:
    def f(x, fmt=".3f"):
        return "–" if x is None or x != x else format(x, fmt)

    lines = [
        SECTION,
        "",
        f"`benchmarks/bench_quality_synthetic.py`: {res['stocks']} synthetic stocks (`synthetic_universe`, all "
        f"boards), planted signal {res['signal']} (seed {res['seed']}), {res['bars']} bars {res['start']} .. "
        f"{res['end']} (built with features in {res['prep_s']:.1f} s). Walk-forward over {res['sessions']} "
        f"sessions ({res['test_start']} .. {res['test_end']}), expanding, refit every {res['retrain_every']}; "
        f"features {', '.join(FEATURES)}. IC = daily Pearson, rank IC = daily Spearman over the stocks; "
        f"t = ICIR x sqrt(days). Portfolio: TopkDropout k = {res['k']}, n_drop = {res['n_drop']}, trading at the "
        "decision close, A-share costs (commission 0.025 % min 5 CNY, transfer 0.001 %, stamp duty 0.05 % on "
        "sells), limit-up / limit-down and suspensions block trades; benchmark = equal-weight universe. Excess "
        "figures in Qlib's sum mode (238 days/year); drawdown of the cumulative excess. "
        f"{platform.machine()} CPU, {dt.date.today().isoformat()}.",
        "",
        "| model | IC | ICIR | IC t | rank IC | rank ICIR | rank IC t | excess ann. (with cost) | IR (with cost) "
        "| max DD excess | excess ann. (no cost) | turnover/day | fits | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in res["rows"].items():
        lines.append(
            f"| {name} | {f(m['ic_mean'])} | {f(m['ic_ir'], '.2f')} | {f(m['ic_t'], '.1f')} | {f(m['rank_ic_mean'])} "
            f"| {f(m['rank_ic_ir'], '.2f')} | {f(m['rank_ic_t'], '.1f')} "
            f"| {f(m['excess_return_with_cost.annualized_return'] * 100, '.1f')} % "
            f"| {f(m['excess_return_with_cost.information_ratio'], '.2f')} "
            f"| {f(m['excess_return_with_cost.max_drawdown'] * 100, '.1f')} % "
            f"| {f(m['excess_return_without_cost.annualized_return'] * 100, '.1f')} % "
            f"| {f(m['turnover_mean'] * 100, '.0f')} % | {res['fits'][name]} | {f(res['wall'][name], '.1f')} |"
        )
    return "\n".join(lines + [""])


def write_section(path: Path, text: str) -> None:
    """Replace (or append) this benchmark's section, leaving other sections alone."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pat = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pat.sub(lambda _: text + "\n", old) if pat.search(old) else old.rstrip("\n") + "\n\n" + text
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stocks", type=int, default=300)
    ap.add_argument("--signal", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=20240101)
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2021, 1, 1))
    ap.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2023, 12, 31))
    ap.add_argument("--sessions", type=int, default=250, help="held-out sessions with an outcome")
    ap.add_argument("--retrain-every", type=int, default=60)
    ap.add_argument("--models", default="volume_z_20,ridge,persistence")
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--n-drop", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    res = run(a.stocks, a.signal, a.start, a.end, a.sessions, a.retrain_every,
              [m.strip() for m in a.models.split(",") if m.strip()], a.k, a.n_drop, a.seed)
    text = markdown(res)
    print(text)
    if a.write:
        write_section(Path(__file__).with_name("RESULTS.md"), text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
