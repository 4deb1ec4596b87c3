"""What the scale-out tests share: the moto bucket, its credentials, a kline.toml table."""

from __future__ import annotations

BUCKET = "kline-lake"
KEY = SECRET = "testing"  # moto accepts any credentials
REGION = "us-east-1"


def storage_toml(endpoint: str) -> str:
    """The ``[storage]`` table of a kline.toml that reaches the S3 server at ``endpoint``."""
    return (f'\n[storage]\nendpoint_url = "{endpoint}"\nregion = "{REGION}"\n'
            f'access_key_id = "{KEY}"\nsecret_access_key = "{SECRET}"\n')


PG_BIN = "/usr/lib/postgresql/15/bin"


def find_or_install_postgres() -> str:
    """The folder of PostgreSQL 15's server binaries; installs Debian's ``postgresql-15``
    with apt-get as root when missing, else skips the test."""
    import os
    import shutil
    import subprocess

    import pytest

    if os.path.exists(f"{PG_BIN}/initdb"):
        return PG_BIN
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("PostgreSQL 15 is not installed and cannot be installed here (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "postgresql-15"], ["apt-get", "update"],
                ["apt-get", "install", "-y", "postgresql-15"]):
        try:
            subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired):
            break
        if os.path.exists(f"{PG_BIN}/initdb"):
            return PG_BIN
    pytest.skip("postgresql-15 could not be installed with apt-get (no package source reachable?)")
