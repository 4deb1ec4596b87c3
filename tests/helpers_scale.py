"""What the scale-out tests share: the moto bucket, its credentials, a kline.toml table."""

from __future__ import annotations

BUCKET = "kline-lake"
KEY = SECRET = "testing"  # moto accepts any credentials
REGION = "us-east-1"


def storage_toml(endpoint: str) -> str:
    """The ``[storage]`` table of a kline.toml that reaches the S3 server at ``endpoint``."""
    return (f'\n[storage]\nendpoint_url = "{endpoint}"\nregion = "{REGION}"\n'
            f'access_key_id = "{KEY}"\nsecret_access_key = "{SECRET}"\n')
