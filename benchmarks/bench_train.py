"""Training benchmarks (issue 5): loop overhead, preset wall times, 300-symbol scale.

Run: ``.venv/bin/python benchmarks/bench_train.py [--symbols 300 --years 10]``.
Synthetic bars (kline.providers.synthetic) stand in for the curated layer.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import time

import torch
from torch import nn

from kline.config import DEFAULT_UNIVERSE, Settings, TrainConfig
from kline.features import build_features, prepare
from kline.metrics import forecast_metrics
from kline.model import LSTMRegressor
from kline.providers.synthetic import SyntheticProvider
from kline.train_stage import holdout_train_end
from kline.training import fit_lstm, lstm_config
from kline.zoo import make_forecaster

END = dt.date(2025, 12, 31)


def universe(n: int) -> list[str]:
    out = list(DEFAULT_UNIVERSE)
    code = 600000
    while len(out) < n:
        out.append(f"{code}.SH")
        code += 1
    return out[:n]


def bars_for(symbols: list[str], years: int):
    return SyntheticProvider().fetch(symbols, dt.date(END.year - years + 1, 1, 1), END)


def bare_loop(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, epochs: int) -> float:
    """Seconds for ``epochs`` of a plain minibatch loop over the same tensors and model."""
    torch.manual_seed(cfg.seed)
    model = LSTMRegressor(lstm_config(cfg, x.shape[2]))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.MSELoss()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=300)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5, help="epochs for the loop-overhead ratio")
    args = ap.parse_args()
    torch.set_num_threads(1)
    s = Settings()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")

    # 1. feature building, N symbols x Y years
    big = bars_for(universe(args.symbols), args.years)
    t0 = time.perf_counter()
    panel_big = build_features(big, s.features)
    print(f"features {args.symbols}x{args.years}y: {len(big)} rows in {time.perf_counter() - t0:.2f} s")

    # 2. pipeline loop vs bare loop, same windows (default universe, 5 years), batch, model
    bars5 = bars_for(list(DEFAULT_UNIVERSE), 5)
    panel5 = build_features(bars5, s.features)
    te, _ = holdout_train_end(panel5, s.train)
    tr = prepare(panel5, s.features, te).train(te)
    cfg = dataclasses.replace(s.train, epochs=args.epochs, valid_fraction=0.0, patience=0, device="cpu")
    x, y = torch.from_numpy(tr.x), torch.from_numpy(tr.y)
    bare_loop(x, y, cfg, 1)  # warm-up: torch's first steps allocate and dispatch slowly
    r = fit_lstm(tr, cfg)
    pipe = r.n_train * args.epochs / r.wall_s
    bare = len(tr) * args.epochs / bare_loop(x, y, cfg, args.epochs)
    print(f"throughput: pipeline {pipe:.0f} samples/s, bare {bare:.0f} samples/s, ratio {pipe / bare:.2f}")

    # 3. default preset (and scope/preset alternatives), default universe, 5 years
    print("default universe, 5 years, held-out tail (test_sessions):")
    for label, over in [("default/global", {}), ("default/per_symbol", {"scope": "per_symbol"}),
                        ("seed", {"preset": "seed"})]:
        st = Settings().replace(train=over)
        f = make_forecaster("lstm", st)
        panel = build_features(bars5, f.features)
        te, n_test = holdout_train_end(panel, f.train)
        t0 = time.perf_counter()
        info = f.fit(panel, te)
        wall = time.perf_counter() - t0
        rows = [(label, f, wall, info["epochs_run"])]
        if label == "default/global":
            for name in ("ridge", "rolling_mean", "persistence"):
                b = make_forecaster(name, st)
                t0 = time.perf_counter()
                b.fit(panel, te)
                rows.append((name, b, time.perf_counter() - t0, None))
        for name, model, w, ep in rows:
            p = model.predict(panel).merge(panel[["symbol", "trade_date", "target"]])
            p = p[(p["target_date"] > te) & p["target"].notna()]
            m = forecast_metrics(p["target"], p["pred_return"])
            eps = "" if ep is None else f" epochs {sorted(set(ep.values()))}"
            print(f"  {name:20s} fit {w:6.1f} s  n {m['n']}  rmse {m['rmse']:.5f}  mase {m['mase']:.3f}  "
                  f"hit {m['directional_accuracy']:.3f}  r2 {m['r2_oos']:+.4f}{eps}")

    # 4. one epoch of the global model over N symbols x Y years
    te_big, _ = holdout_train_end(panel_big, s.train)
    t0 = time.perf_counter()
    trb = prepare(panel_big, s.features, te_big).train(te_big)
    prep_s = time.perf_counter() - t0
    r = fit_lstm(trb, dataclasses.replace(s.train, epochs=1, patience=0))
    print(f"global model {args.symbols}x{args.years}y: {len(trb)} windows, prepare {prep_s:.1f} s, "
          f"one epoch (incl. validation) {r.wall_s:.1f} s, {r.n_train / r.wall_s:.0f} samples/s")
    for scope in ("global", "per_symbol"):
        st = Settings().replace(train={"scope": scope, "epochs": 1, "patience": 0})
        f = make_forecaster("lstm", st)
        t0 = time.perf_counter()
        f.fit(panel_big, te_big)
        print(f"  {scope} 1 epoch end-to-end fit: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
