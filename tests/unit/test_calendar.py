import datetime as dt

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
