import pytest

from kline.config import DEFAULT_UNIVERSE, ConfigError, Settings, load_settings


def test_defaults(isolated_cwd):
    s = load_settings(environ={})
    assert s.lake == "./data_lake"
    assert s.provider == "synthetic"
    assert s.symbols == DEFAULT_UNIVERSE
    assert s.ingest.history_years == 2


def test_precedence_file_env_overrides(isolated_cwd):
    (isolated_cwd / "kline.toml").write_text(
        'lake = "from-file"\nprovider = "file"\n[ingest]\nhistory_years = 5\nretries = 1\n'
        '[tushare]\ncalls_per_minute = 10\n'
    )
    env = {"KLINE_PROVIDER": "synthetic", "KLINE_INGEST_RETRIES": "4", "KLINE_SYMBOLS": "600519.SH, 000001.SZ"}
    s = load_settings(environ=env, overrides={"lake": "from-flag", "ingest": {"history_years": None}})
    assert s.lake == "from-flag"  # flag beats file
    assert s.provider == "synthetic"  # env beats file
    assert s.ingest.history_years == 5  # None override leaves the file's value
    assert s.ingest.retries == 4  # env beats file, coerced to int
    assert s.tushare.calls_per_minute == 10
    assert s.symbols == ("600519.SH", "000001.SZ")


def test_explicit_config_file_must_exist(isolated_cwd):
    with pytest.raises(ConfigError, match="config file not found: nope.toml"):
        load_settings("nope.toml", environ={})


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour = 1\n", "unknown setting 'colour'"),
        ("[ingest]\nhistory_years = \"two\"\n", "history_years: expected int"),
        ("lake = \n", "not valid TOML"),
        ("ingest = 3\n", "[ingest] must be a table"),
    ],
)
def test_bad_config_file_names_the_setting(isolated_cwd, text, message):
    (isolated_cwd / "bad.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings("bad.toml", environ={})
    assert message in str(err.value)


def test_fingerprint_tracks_sections():
    a = Settings()
    b = a.replace(train={"epochs": 3})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint("ingest") == b.fingerprint("ingest")
    assert a.fingerprint("train") != b.fingerprint("train")
