"""Fixtures of the scale-out tests: an S3 endpoint (moto's server) and a PostgreSQL 15 server,
both on loopback, started from what is installed here."""

from __future__ import annotations

import logging

import pytest
from helpers_scale import BUCKET, KEY, REGION, SECRET


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto's S3 server on a free loopback port with one bucket (``BUCKET``); its URL."""
    import boto3
    from moto.server import ThreadedMotoServer

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
