"""One lake, three writers at once: ``kline run`` and two ``kline backfill``s over
overlapping dates. Every command ends 0; afterwards each (symbol, trade_date) is stored once
in raw and curated bars, and the stored prices are the vendor's (nothing lost, nothing
doubled, no row from one writer clobbered by another's partial view)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers_pipeline import fast_config
from reliability.helpers import BIN, kline_env, parquet_files, trials

from kline import registry
from kline.config import Settings, TrainConfig
from kline.features import build_features
from kline.lake import Lake
from kline.providers.synthetic import SyntheticProvider
from kline.zoo import make_forecaster

SYMBOLS = ("000001.SH", "600519.SH")


def _bars(paths) -> pd.DataFrame:
    return pd.concat([pq.read_table(p, columns=["symbol", "trade_date", "close"]).to_pandas() for p in paths],
                     ignore_index=True)


@pytest.mark.e2e
def test_run_and_two_overlapping_backfills_at_once(reliability_server, tmp_path):
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))  # one year of history for `run`
    lake = tmp_path / "lake"
    env = kline_env(reliability_server["env"], tmp_path / "home")
    common = ["--lake", str(lake), "--config", str(cfg)]
    commands = {
        "run": ["run", "--date", "2023-12-29", *common],
        "backfill-a": ["backfill", "--start", "2023-06-01", "--end", "2023-11-30", "--data-only", *common],
        "backfill-b": ["backfill", "--start", "2023-10-09", "--end", "2023-12-29", "--data-only", *common],
    }
    procs = {name: subprocess.Popen([str(BIN / "kline"), *argv], env=env, cwd=tmp_path, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
             for name, argv in commands.items()}
    outs = {name: p.communicate(timeout=600) for name, p in procs.items()}
    codes = {name: p.returncode for name, p in procs.items()}
    assert codes == {name: 0 for name in commands}, {n: outs[n][1][-2000:] for n in codes if codes[n]}

    raw = _bars(parquet_files(lake / "raw" / "bars"))
    curated = _bars(parquet_files(lake / "curated" / "bars"))
    for name, df in (("raw", raw), ("curated", curated)):
        assert not df.duplicated(["symbol", "trade_date"]).any(), name
    want = SyntheticProvider().fetch(list(SYMBOLS), dt.date(2022, 12, 29), dt.date(2023, 12, 29))
    got = raw.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    want = want[want["trade_date"] >= got["trade_date"].min()].sort_values(["symbol", "trade_date"])
    # `run` catches up from whatever the backfills logged first, so the span starts at
    # 2022-12-29 or 2023-06-01 depending on who came first; either way it has no hole, and
    # enough history for the model stages (kline.train_stage.sessions_needed)
    assert dt.date(2022, 12, 28) <= got["trade_date"].min() <= dt.date(2023, 6, 1)
    assert len(got) == len(want) >= 160
    assert (got["close"].to_numpy() == want["close"].to_numpy()).all()
    assert set(map(tuple, curated[["symbol", "trade_date"]].to_numpy())) <= set(map(tuple, got[["symbol", "trade_date"]].to_numpy()))
    assert len(curated) >= len(got) - 5  # a few rows may be quarantined, the same for every writer
    assert (lake / "reports").is_dir()


PROMOTER = Path(__file__).resolve().parent / "promoter.py"


def _registry_with_candidates(root: Path, n: int = 6) -> tuple[Lake, dict[str, float], str]:
    """A lake with ``n`` registered LSTM versions (one tiny fit saved under each name), each
    card carrying a distinct walk-forward MASE, plus one more, the best on paper, whose
    weights are truncated. Returns (lake, MASE by version, the torn version)."""
    lake = Lake(root)
    settings = Settings(train=TrainConfig(hidden=4, epochs=1, batch_size=64, patience=1, test_sessions=60))
    bars = SyntheticProvider(seed=3).fetch(list(SYMBOLS), dt.date(2022, 1, 1), dt.date(2023, 6, 30))
    panel = build_features(bars, settings.features)
    model = make_forecaster("lstm", settings)
    model.fit(panel, dt.date(2023, 3, 31))
    rng = random.Random(7)
    mase = {}
    for i in range(n + 1):
        v = f"20230331-{i:08x}"
        registry.save_version(lake, model, v, {"features": dataclasses.asdict(settings.features)})
        mase[v] = 0.5 if i == n else round(rng.uniform(0.8, 1.2), 4)
        registry.attach_evidence(lake, "lstm", v, {"metrics": {"mase": mase[v]}})
    torn = f"20230331-{n:08x}"
    weights = root / "models" / "lstm" / torn / "weights.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    return lake, mase, torn


def check_champion_history(lake: Lake, mase: dict[str, float], torn: str) -> list[dict]:
    """The pointer names a version that loads and is the history's last word; each move
    starts from where the one before it left the pointer; every promotion beat the champion
    it replaced (the judge saw the pointer it then moved); the torn version never appears."""
    history = registry.champion_history(lake, "lstm")
    champ = registry.get_champion(lake, "lstm")
    assert history, "no move recorded"
    assert [h["seq"] for h in history] == list(range(1, len(history) + 1))
    for before, after in zip([None, *history], history, strict=False):
        assert after["previous"] == (before["version"] if before else None), (before, after)
        if after["action"] == "promote" and after["previous"]:
            assert mase[after["version"]] < mase[after["previous"]], after
        assert after["version"] != torn
    assert (champ["version"] if champ else None) == history[-1]["version"]
    if champ:
        registry.load_version(lake, "lstm", champ["version"])
    return history


def test_two_processes_promoting_at_once_leave_one_consistent_champion(tmp_path):
    lake_root = tmp_path / "lake"
    lake, mase, torn = _registry_with_candidates(lake_root)
    env = kline_env(dict(os.environ), tmp_path / "home")
    rounds, figures = 40, []
    for trial in range(trials(3)):
        for f in ("champion.json", "champion-history.json"):
            (lake_root / "models" / "lstm" / f).unlink(missing_ok=True)
        go = tmp_path / f"go-{trial}"
        procs = [subprocess.Popen([sys.executable, str(PROMOTER), str(lake_root), str(1000 * trial + k), str(rounds),
                                   str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k in range(2)]
        time.sleep(0.5)
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
        counts = [json.loads(o[0]) for o in outs]
        history = check_champion_history(lake, mase, torn)
        moves = sum(c["promoted"] + c["retired"] for c in counts)
        assert len(history) == moves, (len(history), counts)  # no move lost to a concurrent write
        assert sum(c["refused"] for c in counts) > 0  # the torn candidate was tried, and refused
        figures.append({"trial": trial, "moves": moves, "refused": sum(c["refused"] for c in counts)})
    print(json.dumps(figures))


@pytest.mark.e2e
def test_two_replays_of_one_range_at_once(reliability_server, tmp_path):
    """Two ``kline backfill --replay`` of the same sessions on one lake at once: both end 0,
    every bar is stored once with the vendor's prices, every session has its report, and the
    champion pointer's history is one chain (each move starts where the one before left it)."""
    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config(SYMBOLS))
    lake = tmp_path / "lake"
    env = kline_env(reliability_server["env"], tmp_path / "home")
    common = ["--lake", str(lake), "--config", str(cfg)]
    # a champion from the week before, so each replayed session re-judges one and both
    # replays race to retire (or keep) the same champion
    first = subprocess.run([str(BIN / "kline"), "run", "--date", "2023-12-22", *common], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    lk = Lake(lake)
    (seeded,) = registry.list_versions(lk, "lstm")
    registry.set_champion(lk, "lstm", seeded, {"rule": "test: seeded"})
    argv = ["backfill", "--replay", "--start", "2023-12-25", "--end", "2023-12-29", *common]
    procs = [subprocess.Popen([str(BIN / "kline"), *argv], env=env, cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-3000:] for o in outs]

    raw = _bars(parquet_files(lake / "raw" / "bars"))
    curated = _bars(parquet_files(lake / "curated" / "bars"))
    for name, df in (("raw", raw), ("curated", curated)):
        assert not df.duplicated(["symbol", "trade_date"]).any(), name
    got = raw.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    want = SyntheticProvider().fetch(list(SYMBOLS), got["trade_date"].min(), dt.date(2023, 12, 29))
    want = want.sort_values(["symbol", "trade_date"]).reset_index(drop=True)
    assert got["trade_date"].max() == dt.date(2023, 12, 29) and len(got) == len(want) >= 200
    assert (got["close"].to_numpy() == want["close"].to_numpy()).all()
    sessions = ["2023-12-25", "2023-12-26", "2023-12-27", "2023-12-28", "2023-12-29"]
    for day in sessions:
        assert (lake / "reports" / day / "report.html").is_file(), day
    history = registry.champion_history(lk, "lstm")
    assert history[0]["version"] == seeded
    for before, after in zip([None, *history], history, strict=False):
        assert after["previous"] == (before["version"] if before else None), (before, after)
    assert sum(h["action"] == "retire" for h in history) <= 1  # one of the two judged it, not both
    versions = registry.list_versions(lk, "lstm")
    for v in versions[1:]:  # one decision recorded per replayed session, not two
        assert len(list((lake / "models" / "lstm" / v).glob("promotion-*.json"))) == 1, v
    assert len(versions) == 1 + len(sessions)
    champ = registry.get_champion(lk, "lstm")
    assert (champ["version"] if champ else None) == (history[-1]["version"] if history else None)
    if champ:
        registry.load_version(lk, "lstm", champ["version"])
    print(json.dumps({"bars": len(got), "champion_moves": [(h["action"], h["version"]) for h in history],
                      "stderr_lines": [len(o[1].splitlines()) for o in outs]}))
