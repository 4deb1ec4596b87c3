"""Fixtures of the scale-out tests: an S3 endpoint (moto's server) and a PostgreSQL 15 server,
both on loopback, started from what is installed here."""

from __future__ import annotations

import logging

import pytest
from helpers_scale import BUCKET, KEY, REGION, SECRET


def _atomic_conditional_requests() -> None:
    """Make moto decide a conditional PUT or DELETE atomically, as S3 does: moto checks
    ``If-None-Match`` / ``If-Match`` and then writes, so two threads of its server can both
    pass the check (two holders of one lock object). One lock around each request closes that."""
    import functools
    import threading

    from moto.s3.responses import S3Response

    if getattr(S3Response, "_kline_atomic", False):
        return
    guard = threading.Lock()
    for name in ("put_object", "delete_object"):
        method = getattr(S3Response, name)

        @functools.wraps(method)
        def atomic(self, *args, _method=method, **kwargs):
            with guard:
                return _method(self, *args, **kwargs)

        setattr(S3Response, name, atomic)
    S3Response._kline_atomic = True


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server on a free loopback port with one bucket (``BUCKET``); its URL.
    Conditional requests are atomic there, as on S3 (``_atomic_conditional_requests``)."""
    import boto3
    from moto.server import ThreadedMotoServer

    _atomic_conditional_requests()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                 region_name=REGION).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def storage(s3_endpoint):
    """The ``[storage]`` settings that reach the moto server."""
    from kline.config import StorageConfig

    return StorageConfig(endpoint_url=s3_endpoint, region=REGION, access_key_id=KEY, secret_access_key=SECRET)


@pytest.fixture
def s3fs_client(storage):
    """An s3fs filesystem on the moto server (listings never cached)."""
    import s3fs

    return s3fs.S3FileSystem(endpoint_url=storage.endpoint_url, key=KEY, secret=SECRET, use_listings_cache=False)


def _as_postgres() -> dict:
    """Popen options that run a command as the ``postgres`` user when we are root (the server
    refuses to run as root); as ourselves otherwise."""
    import os
    import pwd

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")

    def demote() -> None:
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    return {"preexec_fn": demote, "env": {**os.environ, "HOME": pw.pw_dir, "USER": "postgres"}}


@pytest.fixture(scope="session")
def postgres() -> str:
    """A PostgreSQL 15 server on a free loopback port in a temporary data folder, with an empty
    database ``prefect``; its SQLAlchemy URL for Prefect (``postgresql+asyncpg``)."""
    import os
    import shutil
    import subprocess
    import tempfile

    from helpers_scale import find_or_install_postgres
    from helpers_server import free_port

    pg = find_or_install_postgres()
    base = tempfile.mkdtemp(prefix="kline-pg-")  # outside pytest's root-only tmp tree
    data = os.path.join(base, "data")
    as_pg = _as_postgres()
    if as_pg:
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    port = free_port()

    def run(*cmd: str) -> None:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, **as_pg)
        assert out.returncode == 0, f"{cmd[0]} failed: {out.stdout[-1500:]}{out.stderr[-1500:]}"

    run(f"{pg}/initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(f"{pg}/pg_ctl", "-D", data, "-l", os.path.join(base, "server.log"), "-w", "-t", "60",
        "-o", f"-h 127.0.0.1 -p {port} -k {base} -c fsync=off", "start")
    try:
        run(f"{pg}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "prefect")
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([f"{pg}/pg_ctl", "-D", data, "-m", "fast", "-w", "stop"], capture_output=True,
                       timeout=60, **as_pg)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_prefect_server(postgres, tmp_path_factory):
    """``prefect server start`` on loopback with its database on ``postgres``: ``{"url",
    "env", "home"}``, ``env`` pointing a child process at it."""
    from helpers_server import running_server

    with running_server(tmp_path_factory.mktemp("prefect-home-pg"),
                        {"PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres}, timeout=180,
                        what="the Prefect server on PostgreSQL") as server:
        yield server
