"""The report's arithmetic and drawing without a database: medians, nearest-rank p90,
the Stockholm period, and charts that stay valid XML whatever a name holds."""

from __future__ import annotations

import csv
import io
import math
import random
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispatch import charts, reports
from dispatch.reports import Month, Period, Timing, median, p90

SECONDS = st.lists(st.integers(min_value=0, max_value=10**6) | st.floats(
    min_value=0, max_value=10**6, allow_nan=False), min_size=1, max_size=200)


@given(SECONDS)
def test_p90_is_the_smallest_value_with_nine_tenths_at_or_below_it(values: list[float]) -> None:
    found = p90(values)

    n = len(values)
    assert found in values
    assert 10 * sum(v <= found for v in values) >= 9 * n
    assert 10 * sum(v < found for v in values) < 9 * n


@given(st.integers(min_value=1, max_value=10_000))
def test_p90_takes_the_ceil_of_nine_tenths_rank(n: int) -> None:
    assert p90(list(range(1, n + 1))) == math.ceil(n * 9 / 10 - 1e-9)


@given(SECONDS, st.randoms(use_true_random=False))
def test_median_and_p90_do_not_depend_on_the_order(values: list[float],
                                                   rnd: random.Random) -> None:
    shuffled = values[:]
    rnd.shuffle(shuffled)

    assert (median(shuffled), p90(shuffled)) == (median(values), p90(values))


@given(SECONDS)
def test_median_halves_the_values(values: list[float]) -> None:
    found = median(values)

    assert found is not None
    assert 2 * sum(v <= found for v in values) >= len(values)
    assert 2 * sum(v >= found for v in values) >= len(values)


def test_the_median_of_an_even_count_is_the_mean_of_the_two_middle_values() -> None:
    assert (median([4, 1, 3, 2]), median([3, 1, 2])) == (2.5, 2)


def test_nothing_to_measure_is_none() -> None:
    assert (median([]), p90([]), reports.share(0, 0)) == (None, None, None)


def test_p90_of_ten_values_is_the_ninth_and_of_eleven_the_tenth() -> None:
    assert (p90(list(range(1, 11))), p90(list(range(1, 12)))) == (9, 10)


def test_a_share_just_under_the_target_does_not_read_as_the_target() -> None:
    assert [reports.percent(v) for v in (0.8999, 0.58, 0.9, 2 / 3)] == [
        "89.9 %", "58 %", "90 %", "66.6 %"]


def test_the_spring_forward_day_has_23_hours_and_the_fall_back_day_25() -> None:
    spring = Period.parse("2026-03-29", "2026-03-29")
    autumn = Period.parse("2026-10-25", "2026-10-25")

    assert spring.ends_at - spring.starts_at == timedelta(hours=23)
    assert autumn.ends_at - autumn.starts_at == timedelta(hours=25)
    assert spring.starts_at == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)


def test_december_ends_at_new_year_in_stockholm() -> None:
    month = Month.parse("2026-12")

    assert (month.starts_at, month.ends_at) == (datetime(2026, 11, 30, 23, tzinfo=UTC),
                                                datetime(2026, 12, 31, 23, tzinfo=UTC))


def test_the_weeks_of_a_period_across_new_year() -> None:
    assert Period.parse("2026-12-28", "2027-01-10").weeks() == [
        "2026-W53", "2027-W01"]


@pytest.mark.parametrize("text", ["2026-01-01T00:00", "2026-W01-1", "+2026-01-01", "2026-1-1"])
def test_a_date_in_another_iso_form_is_refused(text: str) -> None:
    with pytest.raises(reports.BadPeriod, match="from must be a date YYYY-MM-DD"):
        Period.parse(text, "2026-12-31")


HOSTILE = "<script>alert(1)</script> & \"x\" ]]> \x01\x0b"


def hostile_report() -> dict[str, Any]:
    period = Period(date(2026, 1, 1), date(2026, 1, 31))
    start = datetime(2026, 1, 10, 12, tzinfo=UTC)
    timings = [Timing(alarm_id=n, provider=HOSTILE, team=f"=cmd|{HOSTILE}",
                      called_out_at=start + timedelta(days=n),
                      on_site_at=start + timedelta(days=n, minutes=50)) for n in range(3)]
    return reports.response_times(timings, period)


@pytest.mark.parametrize("draw", [charts.response_times_svg, charts.within_30_svg],
                         ids=["response-times", "within-30-min"])
def test_a_hostile_name_is_escaped_and_the_chart_stays_valid_xml(
        draw: Callable[[dict[str, Any]], str]) -> None:
    svg = draw(hostile_report())

    root = ET.fromstring(svg.encode())
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert "<script>" not in svg
    assert any("<script>alert(1)</script>" in (e.text or "") for e in root.iter())


def test_a_formula_in_a_csv_cell_is_quoted_as_text() -> None:
    text = reports.response_times_csv(hostile_report())

    (row,) = csv.DictReader(io.StringIO(text))
    assert row["team"].startswith("'=cmd|")
    assert row["deviates"] == "true"


@pytest.mark.parametrize("text", ["9999-12-31", "0001-01-01", "1969-12-31"])
def test_a_date_out_of_the_years_is_refused_not_an_overflow(text: str) -> None:
    with pytest.raises(reports.BadPeriod, match="from must be in the years 1970-9998"):
        Period.parse(text, text)


@pytest.mark.parametrize("text", ["9999-12", "0000-01"])
def test_a_month_out_of_the_years_is_refused(text: str) -> None:
    with pytest.raises(reports.BadPeriod, match="month must be in the years"):
        Month.parse(text)
