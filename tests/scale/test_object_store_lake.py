"""The lake on S3 (moto's server on loopback): whole-object writes, the partition locks made of
conditional writes, and the flows giving the same lake as on local disk with the Prefect
cache in the bucket."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from helpers_scale import BUCKET, storage_toml

from kline.lake import Lake
from kline.lake.locks import LockTimeout, ObjectLock
from kline.providers.synthetic import SyntheticProvider

REPO = Path(__file__).resolve().parents[2]


def fresh_root() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}"


def test_lake_paths_and_listings_work_on_s3(storage):
    lake = Lake(fresh_root(), storage)
    bars = SyntheticProvider(seed=3).fetch(["600519.SH", "000001.SZ"], dt.date(2024, 1, 2), dt.date(2024, 1, 12))
    res = lake.write_raw_bars(bars, "synthetic")
    assert res.partitions == sorted(res.partitions) and len(res.partitions) == bars["trade_date"].nunique()
    assert lake.raw_dates() == sorted(bars["trade_date"].unique())
    back = lake.read_raw_bars(symbols=["600519.SH"])
    pd.testing.assert_frame_equal(back.drop(columns="ingested_at"),
                                  bars[bars.symbol == "600519.SH"].drop(columns="ingested_at").reset_index(drop=True),
                                  check_dtype=False)
    assert lake.write_curated_bars(bars) == [2024]
    assert len(lake.read_curated_bars()) == len(bars)
    # nothing but final objects: no temporary names, no lock left behind
    names = lake.fs.find(lake._strip(lake.root))
    assert not [n for n in names if ".tmp-" in n or n.endswith(".lock")], names


def test_concurrent_writers_of_one_partition_lose_no_rows(storage):
    """Eight writers merge their own symbol into the same day file at once: each read-modify-
    write holds the partition's lock object, so every symbol's row survives."""
    root = fresh_root()
    day = dt.date(2024, 1, 2)
    candidates = [f"6000{i:02d}.SH" for i in range(12)]  # the synthetic market delists a few
    bars = SyntheticProvider(seed=5).fetch(candidates, day, day)
    symbols = sorted(bars["symbol"].unique())[:8]
    assert len(symbols) == 8
    bars = bars[bars.symbol.isin(symbols)]
    errors = []

    def write(sym: str) -> None:
        try:
            Lake(root, storage).write_raw_bars(bars[bars.symbol == sym], "synthetic")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in symbols]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(Lake(root, storage).read_raw_bars(day, day)["symbol"]) == symbols


def test_lock_object_excludes_expires_and_is_removed(storage, s3fs_client):
    lake = Lake(fresh_root(), storage)
    path = lake._strip(lake.paths.lock("probe"))
    held = ObjectLock(lake.fs, path, ttl_s=30, timeout_s=5)
    held.acquire()
    with pytest.raises(LockTimeout):
        ObjectLock(lake.fs, path, ttl_s=30, timeout_s=0.5).acquire()  # a live holder keeps it
    held.release()
    assert not s3fs_client.exists(path)
    with ObjectLock(lake.fs, path, ttl_s=30, timeout_s=1):
        assert s3fs_client.exists(path)
    # a holder that died leaves its object behind; once its lease is over a waiter takes it
    s3fs_client.pipe_file(path, json.dumps({"owner": "dead", "expires_at": time.time() - 1}).encode())
    t0 = time.monotonic()
    with ObjectLock(lake.fs, path, ttl_s=30, timeout_s=5):
        assert json.loads(s3fs_client.cat_file(path))["owner"] != "dead"
    assert time.monotonic() - t0 < 3


def test_a_holder_renews_its_lease(storage, s3fs_client):
    lake = Lake(fresh_root(), storage)
    path = lake._strip(lake.paths.lock("renewed"))
    with ObjectLock(lake.fs, path, ttl_s=1.5, timeout_s=1):
        time.sleep(2.5)  # longer than the lease: renewals keep it alive
        with pytest.raises(LockTimeout):
            ObjectLock(lake.fs, path, ttl_s=1.5, timeout_s=0.5).acquire()


KILLED_WRITER = """
import sys, numpy as np, pyarrow as pa
from kline.config import StorageConfig
from kline.lake import Lake
root, endpoint = sys.argv[1], sys.argv[2]
lake = Lake(root, StorageConfig(endpoint_url=endpoint, region="us-east-1", access_key_id="testing",
                                secret_access_key="testing"))
rows = 3_000_000
table = pa.table({"i": np.arange(rows), "x": np.random.default_rng(0).random(rows)})
for n in range(1000):
    print(n, flush=True)
    lake.atomic_write_table(f"{root}/killed/part-{n}.parquet", table, compression="none")
"""


def test_a_killed_writer_leaves_no_visible_partial_object(storage, s3fs_client):
    root = fresh_root()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, root, storage.endpoint_url],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in proc.stdout:
            if line.strip() == "2":  # two whole objects written, the third on its way
                break
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    time.sleep(1)  # let the server finish with the dropped connection
    found = sorted(s3fs_client.find(f"{root[5:]}/killed"))
    assert not [n for n in found if ".tmp-" in n]
    names = [n for n in found if n.endswith(".parquet")]  # not their recorded hashes (``.parquet.hashes``)
    assert names, "the writer wrote nothing before it was killed"
    import pyarrow.parquet as pq

    for n in names:  # whatever is visible is whole
        assert pq.read_metadata(s3fs_client.open(n, "rb")).num_rows == 3_000_000
    assert len(names) <= 3


@pytest.mark.usefixtures("prefect_harness")
def test_data_docs_are_built_into_the_bucket_and_list_every_machines_runs(tmp_path, storage, s3fs_client,
                                                                         monkeypatch):
    """Two machines (each its own temporary folder, so its own local mirror) validate one
    chunk each on the same S3 lake: the index in the bucket lists both runs, the pages and
    the vendored assets are there, and the summaries name the bucket's pages."""
    import tempfile

    from helpers_pipeline import fast_config

    from flows.backfill import backfill_flow
    from kline.datadocs import LOADED_URL

    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config() + storage_toml(storage.endpoint_url))
    root = fresh_root()
    for machine, (a, b) in {"one": ("2024-03-01", "2024-03-08"), "two": ("2024-03-11", "2024-03-15")}.items():
        (tmp_path / machine).mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / machine))
        out = backfill_flow(start=a, end=b, lake=root, config_file=str(cfg), models=False)
        assert out["chunks"] == 1
    bucket = root[5:]
    runs = [Path(n).stem for n in s3fs_client.ls(f"{bucket}/validation/results") if n.endswith(".json")]
    assert len(runs) == 2
    index = s3fs_client.cat_file(f"{bucket}/validation/docs/index.html").decode()
    assert all(r in index for r in runs), "the index lacks a run validated on the other machine"
    pages = [n for n in s3fs_client.find(f"{bucket}/validation/docs/validations") if n.endswith(".html")]
    assert {r for r in runs if any(r in p for p in pages)} == set(runs)
    assert s3fs_client.exists(f"{bucket}/validation/docs/static/vendor/.fingerprint")
    assert not LOADED_URL.search(index)  # offline: the vendored assets, no CDN
    for r in runs:
        summary = json.loads(s3fs_client.cat_file(f"{bucket}/validation/results/{r}.json"))
        assert summary["docs_path"] == f"{root}/validation/docs/index.html"
        assert all(p.startswith(f"{root}/validation/docs/validations/") and s3fs_client.exists(p[5:])
                   for p in summary["docs_pages"].values())
    assert not [n for n in s3fs_client.find(bucket) if ".tmp-" in n or n.endswith(".lock")]


def run_lake(lake: str, cfg: str) -> dict:
    """A data backfill, then the daily flow of the next session, on ``lake``."""
    from flows.backfill import backfill_flow
    from flows.daily import daily_flow

    b = backfill_flow(start="2023-09-01", end="2024-03-14", lake=lake, config_file=cfg, models=False,
                      return_state=True)
    assert b.is_completed(), b.message
    d = daily_flow(run_date="2024-03-15", lake=lake, config_file=cfg, return_state=True)
    assert d.is_completed(), d.message
    return d.result()


def differences(a, b, at: str = "") -> list[str]:
    """Paths of the leaves where two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in differences(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{at}[{i}]")]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"[:300]]


def lake_contents(lake: Lake) -> dict:
    """What must not depend on where the lake is: curated rows, model cards, report metrics."""
    from kline.registry import list_versions, read_card

    curated = lake.read_curated_bars().drop(columns="ingested_at")
    versions = list_versions(lake, "lstm")
    drop = {"created_at", "wall_s", "code_version", "history"}
    cards = [{k: v for k, v in read_card(lake, "lstm", v).items() if k not in drop} for v in versions]
    metrics = json.loads(lake.read_text(f"{lake.paths.report_dir(dt.date(2024, 3, 15))}/metrics.json"))
    # paths name the lake's own root
    same = json.loads(json.dumps({"versions": versions, "cards": cards, "metrics": metrics}).replace(lake.root, "<lake>"))
    return {"curated": curated, **same}


@pytest.mark.usefixtures("prefect_harness")
def test_flows_on_s3_give_the_local_lake_and_a_rerun_is_cached_from_the_bucket(
        tmp_path, storage, s3fs_client):
    from helpers_pipeline import fast_config
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.daily import daily_flow

    cfg = tmp_path / "kline.toml"
    cfg.write_text(fast_config() + storage_toml(storage.endpoint_url))
    local_root, s3_root = str(tmp_path / "lake"), fresh_root()
    t0 = time.perf_counter()
    local_out = run_lake(local_root, str(cfg))
    t1 = time.perf_counter()
    s3_out = run_lake(s3_root, str(cfg))
    t2 = time.perf_counter()
    print(f"\nbackfill + daily: local {t1 - t0:.1f} s, s3 {t2 - t1:.1f} s")
    assert s3_out["report"] == f"{s3_root}/reports/2024-03-15/report.html"
    assert s3_out["summary"] == local_out["summary"]
    local, remote = lake_contents(Lake(local_root)), lake_contents(Lake(s3_root, storage))
    pd.testing.assert_frame_equal(remote.pop("curated"), local.pop("curated"))
    assert differences(remote, local) == []
    bucket_files = s3fs_client.find(s3_root[5:])
    assert not [n for n in bucket_files if ".tmp-" in n or n.endswith(".lock")]
    assert s3fs_client.exists(f"{s3_root[5:]}/reports/2024-03-15/report.html")

    again = daily_flow(run_date="2024-03-15", lake=s3_root, config_file=str(cfg), return_state=True)
    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + 30
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[again.state_details.flow_run_id])))
            if runs and all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert runs and {r.state.name for r in runs} == {"Cached"}
    # each cache hit was read from its record in the bucket, next to the data
    results = f"{s3_root}/_state/prefect-results"
    with get_client(sync_client=True) as client:
        for r in runs:
            record = r.state.data  # where the hit was read from: a block and a key in it
            block = client.read_block_document(record.storage_block_id)
            assert block.data["basepath"] == results, r.name
            assert s3fs_client.exists(f"{results}/{record.storage_key}"), r.name
