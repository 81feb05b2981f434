"""The schedule grammar of contract §7.2 (learning rate and clip value)."""

import pytest

from hypernet.errors import HypernetConfigError
from hypernet.training.schedule import ScheduleError, parse_schedule


def rates(schedule):
    return [(entry.rate, entry.end_step) for entry in schedule.entries]


def test_training_stops_at_the_last_step_named_even_when_max_steps_is_larger():
    schedule = parse_schedule("5e-5:100, 5e-6:1500", max_steps=100000)
    assert rates(schedule) == [(5e-5, 100), (5e-6, 1500)]
    assert schedule.end_step == 1500
    assert schedule.rate_at(0) == 5e-5 and schedule.rate_at(99) == 5e-5
    assert schedule.rate_at(100) == 5e-6 and schedule.rate_at(1499) == 5e-6
    assert schedule.finished(1500) and not schedule.finished(1499)


def test_a_bare_rate_runs_until_max_steps_and_ends_parsing():
    schedule = parse_schedule("5e-5:100, 5e-6:1500, 5e-7, 1e-9:99999", max_steps=100000)
    assert rates(schedule) == [(5e-5, 100), (5e-6, 1500), (5e-7, 100000)]
    assert rates(parse_schedule("0.00001", max_steps=500)) == [(1e-5, 500)]
    assert rates(parse_schedule("1e-3:10, 1e-4:-1, 1e-5:50", max_steps=40)) == [(1e-3, 10), (1e-4, 40)]


def test_steps_are_capped_at_max_steps_and_parsing_stops_there():
    assert rates(parse_schedule("1e-3:100, 1e-4:300, 1e-5:400", max_steps=200)) == [(1e-3, 100), (1e-4, 200)]


def test_entries_ending_before_the_resume_step_are_skipped():
    schedule = parse_schedule("5e-5:100, 5e-6:1500, 5e-7", max_steps=2000, start_step=100)
    assert rates(schedule) == [(5e-6, 1500), (5e-7, 2000)]
    assert rates(parse_schedule("1e-3:100", max_steps=2000, start_step=100)) == []  # nothing left


def test_blanks_are_ignored():
    assert rates(parse_schedule(" 1e-3 : 10 ,, ,1e-4 ", max_steps=20)) == [(1e-3, 10), (1e-4, 20)]


@pytest.mark.parametrize(
    "text, position, words",
    [
        ("5e-5:100, abc:200", 11, "'abc' is not a number"),
        ("5e-5:1x0", 6, "'1x0' is not a whole number"),
        ("5e-5:100:3", 9, "one RATE:STEP pair"),
        ("5e-5:100, 1e-6:50", 16, "does not come after"),
        ("-1e-3", 1, "at least 0"),
        ("1e-3:-5", 6, "must be positive"),
        ("", 1, "is empty"),
        (" , ,", 1, "no entries"),
    ],
)
def test_errors_point_at_the_position(text, position, words):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text, max_steps=1000)
    message = str(caught.value)
    assert words in message
    assert f"at character {position}" in message
    assert isinstance(caught.value, HypernetConfigError)
    assert caught.value.position == position - 1


def test_the_clip_value_uses_the_same_grammar():
    schedule = parse_schedule("0.1:50, 0.05", max_steps=100, what="clip value")
    assert schedule.rate_at(10) == 0.1 and schedule.rate_at(60) == 0.05
    with pytest.raises(ScheduleError, match="clip value schedule"):
        parse_schedule("x", max_steps=100, what="clip value")
