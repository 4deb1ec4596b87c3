"""kline.lake.files / kline.lake.integrity: every Parquet file's hash is recorded when written
and checked when read; a crash never makes a good file look corrupt; a disk fault leaves the
previous version and no temporary file; stale temporary files are cleaned and counted."""

import errno
import os
import pickle
import subprocess
import sys
import time

import pyarrow as pa
import pytest
from fsspec.implementations.local import LocalFileOpener

from kline.lake import Lake
from kline.lake.files import CorruptFileError, LakeWriteError, sha256_of
from kline.lake.integrity import scan


def _table(n: int = 1000, v: float = 1.0) -> pa.Table:
    return pa.table({"symbol": [f"{i:06d}.SH" for i in range(n)], "close": [v * i for i in range(n)]})


def _path(lake: Lake) -> str:
    return f"{lake.paths.curated_bars_dir()}/year=2024/part.parquet"


def _bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _sidecar(lake: Lake, path: str) -> list[str]:
    with open(lake.paths.accepted_hashes(path)) as f:
        return f.read().split()


def test_the_hash_is_recorded_when_written_and_checked_when_read(lake):
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    assert _sidecar(lake, path) == [sha256_of(_bytes(path))]
    assert lake.read_table(path).equals(_table())
    lake.atomic_write_table(path, _table(v=2.0))  # a rewrite: only the new version accepted
    assert _sidecar(lake, path) == [sha256_of(_bytes(path))]
    assert lake.read_table(path, columns=["close"], filters=[("symbol", "=", "000002.SH")]).column(0).to_pylist() == [4.0]


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "empty"])
def test_a_damaged_file_is_never_read_and_the_error_names_it(lake, damage):
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    data = bytearray(_bytes(path))
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "bitflip":
        data[len(data) // 3] ^= 0x01  # a data page, not the footer: Parquet itself may not notice
    else:
        data = bytearray()
    with open(path, "wb") as f:
        f.write(data)
    with pytest.raises(CorruptFileError) as err:
        lake.read_table(path)
    assert path in str(err.value) and "kline repair" in str(err.value)
    report = scan(lake)
    assert list(report.corrupt) == [path] and report.verified == 0
    assert pickle.loads(pickle.dumps(err.value)).path == path


def test_a_file_without_a_recorded_hash_is_read_and_reported_unverified(lake):
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    os.remove(lake.paths.accepted_hashes(path))  # as written before hashes were recorded
    assert lake.read_table(path).equals(_table())
    report = scan(lake)
    assert report.unverified == [path] and report.clean
    other = f"{lake.paths.curated_bars_dir()}/year=2023/part.parquet"
    os.makedirs(os.path.dirname(other))
    with open(other, "wb") as f:
        f.write(_bytes(path)[:100])  # unverified and torn: it does not parse, so it is corrupt
    with pytest.raises(CorruptFileError, match="not a readable Parquet file"):
        lake.read_table(other)
    assert list(scan(lake).corrupt) == [other]
    # its next write records a hash; a crash before the rename leaves it unverified, not corrupt
    lake.atomic_write_table(path, _table(v=3.0))
    assert _sidecar(lake, path) == [sha256_of(_bytes(path))]


class _Crash(Exception):
    pass


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_crash_at_any_step_of_a_write_never_makes_a_good_file_look_corrupt(lake, monkeypatch, step):
    """The three renames of a rewrite: sidecar (old + new), data, sidecar (new)."""
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    old = _bytes(path)
    calls = []
    real = os.replace

    def crashing(src, dst):
        calls.append(dst)
        if len(calls) == step:
            raise _Crash(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", crashing)
    with pytest.raises(_Crash):
        lake.atomic_write_table(path, _table(v=5.0))
    monkeypatch.undo()
    got = lake.read_table(path)  # verified: the old version before the data rename, the new after
    assert got.equals(_table(v=5.0) if step == 3 else _table())
    assert (_bytes(path) == old) == (step < 3)
    assert len(_sidecar(lake, path)) == (1 if step == 1 else 2)
    assert scan(lake).clean and not scan(lake).unverified
    assert [n for n in os.listdir(os.path.dirname(path)) if ".tmp-" in n] == []


def _faulty_write(monkeypatch, code: int, match: str):
    """Make a local write of a path containing ``match`` write half its bytes, then fail."""
    real = LocalFileOpener.write

    def write(self, data, *a):
        if match in self.path:
            mv = memoryview(data)
            real(self, mv[: len(mv) // 2])
            raise OSError(code, os.strerror(code))
        return real(self, data, *a)

    monkeypatch.setattr(LocalFileOpener, "write", write)


@pytest.mark.parametrize("code, name", [(errno.ENOSPC, "ENOSPC"), (errno.EIO, "EIO")])
@pytest.mark.parametrize("target", ["part.parquet.tmp", "part.parquet.hashes.tmp"])
def test_a_disk_fault_mid_write_keeps_the_previous_version_and_leaves_no_temporary_file(
        lake, monkeypatch, code, name, target):
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    before = (_bytes(path), _sidecar(lake, path))
    _faulty_write(monkeypatch, code, target)
    with pytest.raises(LakeWriteError) as err:
        lake.atomic_write_table(path, _table(v=7.0))
    monkeypatch.undo()
    msg = str(err.value)
    assert "\n" not in msg and os.strerror(code) in msg and f"({name})" in msg and "part.parquet" in msg
    assert err.value.errno == code and isinstance(err.value, OSError)
    assert _bytes(path) == before[0]
    assert lake.read_table(path).equals(_table())
    assert [n for n in os.listdir(os.path.dirname(path)) if ".tmp-" in n] == []
    assert pickle.loads(pickle.dumps(err.value)).errno == code


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporary_files_of_dead_writers_are_counted_and_cleaned_by_the_next_writer(lake):
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    folder = os.path.dirname(path)
    dead = f"{path}.tmp-{_dead_pid()}-{'a' * 32}"
    live = f"{path}.tmp-{os.getppid()}-{'b' * 32}"  # a live writer's (our parent)
    for p in (dead, live):
        with open(p, "wb") as f:
            f.write(b"half a file")
    assert scan(lake).stale_tmp == [dead]
    lake.atomic_write_table(path, _table(v=2.0))
    assert sorted(n for n in os.listdir(folder) if ".tmp-" in n) == [os.path.basename(live)]


def test_the_writer_of_a_partition_removes_every_temporary_file_under_its_lock(lake):
    day = lake.paths.raw_bars(__import__("datetime").date(2024, 1, 2), "synthetic")
    folder = os.path.dirname(day)
    os.makedirs(folder)
    legacy = f"{day}.tmp-{'c' * 32}"  # an older kline's name, without a pid
    with open(legacy, "wb") as f:
        f.write(b"x")
    with lake.lock_partition(day):
        pass
    assert not os.path.exists(legacy)


def test_a_file_damaged_after_this_process_checked_it_is_still_caught(lake):
    """Later reads of a file this process verified skip the hash only while it is unchanged."""
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    time.sleep(0.05)  # the damage's mtime must differ from the write's (coarse file-system clocks)
    assert lake.read_table(path, columns=["close"], filters=[("symbol", "=", "000001.SH")]).num_rows == 1
    assert lake.read_table(path).equals(_table())  # the second read: from the cache of checked files
    with open(path, "r+b") as f:  # same size, same inode: one bit
        f.seek(os.path.getsize(path) // 3)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x01]))
    with pytest.raises(CorruptFileError):
        lake.read_table(path, columns=["close"], filters=[("symbol", "=", "000001.SH")])


@pytest.fixture(scope="module")
def s3_lake_root():
    """A fresh prefix in a bucket of moto's S3 server on loopback, and the storage reaching it."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from kline.config import StorageConfig

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    storage = StorageConfig(endpoint_url=f"http://{host}:{port}", region="us-east-1", access_key_id="testing",
                            secret_access_key="testing")
    boto3.client("s3", endpoint_url=storage.endpoint_url, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="lake")
    yield "s3://lake/integrity", storage
    server.stop()


def test_on_s3_the_hash_is_recorded_checked_and_a_damaged_object_is_named(s3_lake_root):
    root, storage = s3_lake_root
    lake = Lake(root, storage=storage)
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    lake.atomic_write_table(path, _table(v=2.0))
    assert lake.read_table(path).equals(_table(v=2.0))
    key = lake.fs._strip_protocol(path)
    assert lake.accepted_hashes(path) == {sha256_of(lake.fs.cat_file(key))}
    data = bytearray(lake.fs.cat_file(key))
    data[len(data) // 3] ^= 0x01
    lake.fs.pipe_file(key, bytes(data))
    with pytest.raises(CorruptFileError) as err:
        lake.read_table(path)
    assert err.value.path == path
    assert list(scan(lake).corrupt) == [path]  # named as the lake names it: an s3:// URL


def test_a_reader_racing_a_writer_never_sees_a_good_file_as_corrupt(lake, monkeypatch):
    """The worst interleaving: a whole rewrite lands between the reader's read of the recorded
    hashes and its read of the data, so the two disagree once."""
    path = _path(lake)
    lake.atomic_write_table(path, _table())
    real = type(lake)._read_buffer
    raced = []

    def read_buffer(self, p):
        if not raced:
            raced.append(p)
            self.atomic_write_table(path, _table(v=9.0))
        return real(self, p)

    monkeypatch.setattr(type(lake), "_read_buffer", read_buffer)
    assert lake.read_table(path).equals(_table(v=9.0)) and raced
