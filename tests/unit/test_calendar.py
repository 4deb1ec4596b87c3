import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from kline import calendar as cal


def test_sessions_skip_weekends_and_holidays():
    assert cal.is_session(dt.date(2024, 1, 2))
    assert not cal.is_session(dt.date(2024, 1, 6))  # Saturday
    assert not cal.is_session(dt.date(2024, 10, 1))  # National Day
    week = cal.sessions_in_range(dt.date(2024, 9, 30), dt.date(2024, 10, 8))
    assert week == [dt.date(2024, 9, 30), dt.date(2024, 10, 8)]


def test_previous_next_and_on_or_before():
    assert cal.previous_session(dt.date(2024, 10, 8)) == dt.date(2024, 9, 30)
    assert cal.next_session(dt.date(2024, 9, 30)) == dt.date(2024, 10, 8)
    assert cal.session_on_or_before(dt.date(2024, 10, 5)) == dt.date(2024, 9, 30)
    assert cal.session_on_or_before(dt.date(2024, 10, 8)) == dt.date(2024, 10, 8)


def test_other_calendar_and_unknown_code():
    assert cal.is_session(dt.date(2024, 10, 1), "XNYS")
    assert not cal.is_session(dt.date(2024, 7, 4), "XNYS")
    with pytest.raises(cal.CalendarError, match="unknown exchange calendar 'NOPE'"):
        cal.is_session(dt.date(2024, 1, 2), "NOPE")


# -- layers past the published calendar ------------------------------------------------------

LAST_PUBLISHED = dt.date(2026, 12, 31)  # exchange-calendars 4.13 lists XSHG holidays through 2026


def write_holiday_file(path, years: dict[int, list[str]], code: str = "XSHG") -> str:
    body = "\n".join(f"{y} = [{', '.join(repr(d) for d in days)}]".replace("'", '"') for y, days in years.items())
    path.write_text(f"[{code}]\n# source: test\n{body}\n", encoding="utf-8")
    return str(path)


def layers(**kw) -> None:
    cal.configure({"XSHG": cal.Layers(**kw)})


def test_past_the_published_year_sessions_are_provisional_weekdays_minus_fixed_closures():
    assert cal.known_through() == LAST_PUBLISHED
    assert cal.next_session(LAST_PUBLISHED) == dt.date(2027, 1, 4)  # 1 January 2027 is a Friday
    assert not cal.is_session(dt.date(2027, 1, 1))
    assert cal.is_provisional(dt.date(2027, 1, 4)) and not cal.is_provisional(LAST_PUBLISHED)
    may = cal.sessions_in_range(dt.date(2027, 4, 28), dt.date(2027, 5, 10))
    assert may == [dt.date(2027, 4, 28), dt.date(2027, 4, 29), dt.date(2027, 4, 30),
                   dt.date(2027, 5, 6), dt.date(2027, 5, 7), dt.date(2027, 5, 10)]
    assert not any(cal.is_session(dt.date(2027, 10, d)) for d in range(1, 8))
    assert cal.previous_session(dt.date(2027, 1, 4)) == LAST_PUBLISHED
    info = cal.calendar_info()
    assert info["known_through"] == "2026-12-31" and info["source"].startswith("exchange-calendars")


def test_a_holiday_file_year_extends_what_is_known_through_the_library_class(tmp_path):
    f = write_holiday_file(tmp_path / "h.toml", {2027: ["2027-01-01", "2027-02-08", "2027-02-09"]})
    layers(holiday_files=(f,))
    assert cal.known_through() == dt.date(2027, 12, 31)
    assert not cal.is_provisional(dt.date(2027, 6, 1))
    assert not cal.is_session(dt.date(2027, 2, 8)) and cal.is_session(dt.date(2027, 2, 10))
    # a whole known year: 1-5 May is no longer assumed closed, only what the file lists
    assert cal.is_session(dt.date(2027, 5, 3))
    assert [x["source"] for x in cal.calendar_info()["layers"]][-1] == "holiday file h.toml"
    assert cal.is_session(dt.date(2026, 12, 31)) and not cal.is_session(dt.date(2026, 10, 1))


def test_a_holiday_file_with_a_gap_year_extends_nothing_past_the_gap(tmp_path):
    f = write_holiday_file(tmp_path / "h.toml", {2028: ["2028-01-03"]})
    layers(holiday_files=(f,))
    assert cal.known_through() == LAST_PUBLISHED
    assert cal.is_session(dt.date(2028, 1, 3))  # provisional: the file's 2028 cannot be trusted alone


def test_bad_holiday_files_are_refused_with_their_name(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[XSHG]\n2027 = ['2028-01-03']\n", encoding="utf-8")
    with pytest.raises(cal.CalendarError, match="bad.toml.*another year"):
        cal.holiday_file_years("XSHG", str(bad))
    with pytest.raises(cal.CalendarError, match="not found"):
        cal.holiday_file_years("XSHG", str(tmp_path / "missing.toml"))


def test_the_packaged_holiday_file_parses():
    assert cal.HOLIDAY_FILE.is_file()
    years = cal.holiday_file_years("XSHG", str(cal.HOLIDAY_FILE))
    assert all(d.year == y and d.weekday() < 5 for y, days in years.items() for d in days)


def test_settings_days_apply_anywhere_without_extending_the_known_range():
    layers(holidays=frozenset({dt.date(2027, 2, 8)}), extra_sessions=frozenset({dt.date(2027, 5, 3)}))
    assert not cal.is_session(dt.date(2027, 2, 8)) and cal.is_session(dt.date(2027, 5, 3))
    assert cal.known_through() == LAST_PUBLISHED


def test_the_vendor_calendar_wins_where_it_disagrees_and_says_so():
    year = cal.sessions_in_range(dt.date(2027, 1, 1), dt.date(2027, 12, 31))
    closed = dt.date(2027, 2, 8)
    vendor = cal.VendorCalendar("tushare trade_cal", dt.date(2026, 1, 1), dt.date(2027, 12, 31),
                                frozenset(cal.sessions_in_range(dt.date(2026, 1, 1), LAST_PUBLISHED))
                                | frozenset(d for d in year if d != closed))
    layers(vendor=vendor)
    assert not cal.is_session(closed)
    assert cal.known_through() == dt.date(2027, 12, 31)
    info = cal.calendar_info()
    assert info["source"] == "tushare trade_cal"
    assert any("closed on 2027-02-08" in line for line in info["disagreements"])


def test_provisional_days_without_any_bar_are_closures_up_to_the_last_bar():
    no_bars = frozenset({dt.date(2027, 1, 5), dt.date(2026, 12, 30), dt.date(2027, 1, 12)})
    layers(no_bar_days=no_bars, last_bar_day=dt.date(2027, 1, 8))
    assert not cal.is_session(dt.date(2027, 1, 5))
    assert cal.is_session(dt.date(2026, 12, 30))  # known: a missing bar there is a hole, not a closure
    assert cal.is_session(dt.date(2027, 1, 12))  # after the lake's last bar: nothing seen yet
    assert cal.calendar_info()["provisional_closures"] == ["2027-01-05"]


def test_the_fingerprint_changes_only_where_a_run_can_see():
    before_2024 = cal.fingerprint("XSHG", dt.date(2024, 6, 3))
    before_2027 = cal.fingerprint("XSHG", dt.date(2027, 1, 4))
    layers(holidays=frozenset({dt.date(2027, 1, 6)}))
    assert cal.fingerprint("XSHG", dt.date(2024, 6, 3)) == before_2024
    assert cal.fingerprint("XSHG", dt.date(2027, 1, 4)) != before_2027


SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("clock", "expected"), [
    ("2026-12-01T13:00", "2026-11-30"),  # a Tuesday session, open
    ("2026-12-01T17:29", "2026-11-30"),  # closed, but the vendors have not published yet
    ("2026-12-01T17:31", "2026-12-01"),
    ("2026-12-01T23:00", "2026-12-01"),
    ("2026-12-05T13:00", "2026-12-04"),  # Saturday: Friday's session
    ("2026-10-01T19:00", "2026-09-30"),  # National Day
    ("2026-12-31T18:30", "2026-12-31"),  # the last published session
    ("2027-01-01T18:30", "2026-12-31"),  # New Year's Day, provisional closure
    ("2027-01-04T13:00", "2026-12-31"),
    ("2027-01-04T18:30", "2027-01-04"),  # provisional session
])
def test_last_closed_session_follows_the_close_cutoff(clock, expected):
    now = dt.datetime.fromisoformat(clock).replace(tzinfo=SH)
    assert cal.last_closed_session("17:30", "Asia/Shanghai", now=now) == dt.date.fromisoformat(expected)


def test_the_cutoff_is_read_in_the_exchange_time_zone():
    # 09:00 UTC is 17:00 in Shanghai: not yet closed for the cutoff
    now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    assert cal.last_closed_session("17:30", "Asia/Shanghai", now=now) == dt.date(2026, 11, 30)
    assert cal.session_not_closed(dt.date(2026, 12, 1), "17:30", now=now)
    assert not cal.session_not_closed(dt.date(2026, 11, 30), "17:30", now=now)
    with pytest.raises(ValueError, match="close_cutoff"):
        cal.parse_cutoff("5pm")


def test_layers_belong_to_the_context_that_set_them():
    import threading

    seen = {}

    def other_run():
        layers(holidays=frozenset({dt.date(2027, 2, 8)}))
        seen["other"] = cal.is_session(dt.date(2027, 2, 8))

    t = threading.Thread(target=other_run)
    t.start()
    t.join()
    assert seen["other"] is False
    assert cal.is_session(dt.date(2027, 2, 8))  # this context never configured that holiday


def test_a_run_knows_no_closure_after_its_date(lake):
    from kline.config import CalendarConfig
    from kline.providers.synthetic import SyntheticProvider

    bars = SyntheticProvider().fetch(["000001.SH"], dt.date(2027, 1, 4), dt.date(2027, 1, 8))
    bars = bars[bars["trade_date"] != dt.date(2027, 1, 6)]  # nobody traded the 6th
    lake.write_raw_bars(bars, "synthetic")
    cal.configure(cal.run_layers(CalendarConfig(), ["XSHG"], lake))
    assert not cal.is_session(dt.date(2027, 1, 6))
    cal.configure(cal.run_layers(CalendarConfig(), ["XSHG"], lake, as_of=dt.date(2027, 1, 5)))
    assert cal.next_session(dt.date(2027, 1, 5)) == dt.date(2027, 1, 6)  # as of the 5th, unknown


def test_the_market_calendar_ignores_a_run_s_layers():
    before = cal.market_sessions().copy()
    layers(holidays=frozenset({dt.date(2027, 2, 8)}))
    assert (cal.market_sessions() == before).all()
