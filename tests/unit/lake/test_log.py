"""kline.lake.log: the ingestion log, one file per as-of month."""


def test_ingest_log_roundtrip(lake):
    lake.ingest_log.append({"source": "synthetic", "start": "2024-01-02", "end": "2024-01-04"})
    lake.ingest_log.append({"source": "synthetic", "start": "2024-01-05", "end": "2024-02-05", "as_of": "2024-02-05"})
    lake.ingest_log.append({"source": "synthetic", "start": "2024-01-05", "end": "2024-01-05"})
    assert [e["end"] for e in lake.read_ingest_log()] == ["2024-01-04", "2024-01-05", "2024-02-05"]
    assert lake.ingest_log.months() == ["2024-01", "2024-02"]
    assert [e["end"] for e in lake.read_ingest_log(["2024-02"])] == ["2024-02-05"]
