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


def test_environment_forms(isolated_cwd):
    env = {
        "KLINE_BACKTEST_MODELS": "persistence,ridge",  # lists: comma-separated
        "KLINE_FILE_COLUMNS": '{"close": "Close"}',  # tables: JSON
        "KLINE_TRAIN_WARM_START": "off",
        "KLINE_CALENDAR_CLOSE_CUTOFF": "16:00",
        "KLINE_MAX_CONCURRENCY": "3",
        "KLINE_INGEST_BOGUS": "1",  # names no setting: ignored, like any other variable
        "KLINE_CONFIG_DIR": "x",
    }
    s = load_settings(environ=env)
    assert s.backtest.models == ("persistence", "ridge")
    assert s.file.columns == {"close": "Close"}
    assert (s.train.warm_start, s.calendar.close_cutoff, s.max_concurrency) == (False, "16:00", 3)


def test_settings_built_in_code_ignore_the_environment(isolated_cwd, monkeypatch):
    monkeypatch.setenv("KLINE_LAKE", "from-env")
    monkeypatch.setenv("KLINE_TRAIN_EPOCHS", "2")
    assert (Settings().lake, Settings().train.epochs) == ("./data_lake", 60)
    s = load_settings()
    assert (s.lake, s.train.epochs) == ("from-env", 2)


@pytest.mark.parametrize(
    "text, env, message",
    [
        ('[backtest]\nexecution = "at_noon"\n', {},
         "bad.toml: backtest.execution: unknown value 'at_noon', choose from next_open, next_close, open_to_close"),
        ("", {"KLINE_TRAIN_RETRAIN": "weekly"},
         "KLINE_TRAIN_RETRAIN: train.retrain: unknown value 'weekly', choose from always, every_n, on_change"),
        ("", {"KLINE_INGEST_RETRIES": "many"}, "KLINE_INGEST_RETRIES: ingest.retries: expected int, got 'many'"),
        ("[ingest]\nbogus = 1\n", {}, "bad.toml: unknown setting 'ingest.bogus'"),
    ],
)
def test_bad_values_name_the_setting_and_where_it_came_from(isolated_cwd, text, env, message):
    (isolated_cwd / "bad.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings("bad.toml", environ=env)
    assert str(err.value) == message


def test_sections_built_in_code_are_validated_too():
    from kline.config import TrainConfig

    with pytest.raises(ConfigError, match="TrainConfig.scope: unknown value 'everywhere'"):
        TrainConfig(scope="everywhere")
    with pytest.raises(ConfigError, match="overrides: train.lr: expected float"):
        Settings().replace(train={"lr": "fast"})
    assert Settings().replace(symbols=["600519.SH"], train={"epochs": None}).symbols == ("600519.SH",)
