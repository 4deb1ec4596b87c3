import datetime as dt

import pytest
from prefect.states import Failed

from kline.config import Settings
from kline.lake import Lake
from kline.providers import FatalProviderError, TransientProviderError
from tasks._common import settings_from, stage_settings
from tasks.ingest import ingest_chunk, retry_options, retry_transient_only


def test_ingest_chunk_returns_a_reference_not_data(lake_root):
    sub = stage_settings(Settings(), "ingest")
    ref = ingest_chunk.fn(lake_root, sub, ["600519.SH", "000001.SH"], "2024-01-01", "2024-01-31")
    assert set(ref) == {"source", "start", "end", "symbols", "rows", "rows_by_symbol", "partitions", "content_hash",
                        "facts_rows", "provider_notes"}
    assert ref["rows"] == len(Lake(lake_root).read_raw_bars(dt.date(2024, 1, 1), dt.date(2024, 1, 31)))


def test_stage_settings_leave_other_stages_out():
    a = stage_settings(Settings(), "ingest")
    b = stage_settings(Settings().replace(train={"epochs": 1}), "ingest")
    assert a == b and "train" not in a
    assert settings_from(a).provider == "synthetic"


@pytest.mark.parametrize("exc, retry", [(TransientProviderError("rate"), True), (FatalProviderError("token"), False), (ValueError("bug"), False)])
def test_only_transient_errors_are_retried(exc, retry):
    assert retry_transient_only(None, None, Failed(data=exc)) is retry


def test_retry_options_come_from_config():
    opts = retry_options(stage_settings(Settings().replace(ingest={"retries": 5, "retry_delay_s": 0}), "ingest"))
    assert opts["retries"] == 5 and opts["retry_delay_seconds"] == 0
