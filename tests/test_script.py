"""Scripted visits: parsing reports every bad line; the driver plays taps through the queue."""

import threading

import pytest

from kiosk import flow, script


def test_script_parses_steps_and_comments():
    steps = script.parse("insert citizen-{n}  # a card\nwait rating 5\nrating 4\n\nreason skip\n")
    assert [(s.verb, s.arg) for s in steps] == [
        ("insert", "citizen-{n}"), ("wait", "rating"), ("rating", "4"), ("reason", "skip")]
    assert steps[1].timeout_s == 5.0


def test_script_reports_every_bad_line_with_its_number():
    with pytest.raises(script.ScriptError) as caught:
        script.parse("rating 9\nwait nowhere\nfly away\nok\n", "visits.txt")
    lines = str(caught.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["1", "2", "3"]
    assert "unknown step 'fly'" in lines[2]


class FakeRunner:
    """Takes events like the real runner and moves to the screen each tap asks for."""

    def __init__(self):
        self.state = flow.State()
        self.events = self
        self.taken = []

    def put(self, event):
        self.taken.append(event)
        if isinstance(event, flow.RatingChosen):
            self.state = flow.State(screen=flow.Screen.THANK_YOU)


class FakeCard:
    def __init__(self):
        self.history = []

    def insert(self, profile):
        self.history.append(("insert", profile))

    def remove(self):
        self.history.append(("remove", None))


def test_script_driver_repeats_with_numbered_cards():
    runner, card = FakeRunner(), FakeCard()
    steps = script.parse("insert citizen-{n}\nrating 5\nwait thank_you 2\nremove\n")
    driver = script.ScriptDriver(runner, steps, repeat=2, card=card)
    driver.start()
    assert driver.done.wait(5)
    assert driver.error is None and driver.completed == 2
    assert card.history == [("insert", "citizen-0"), ("remove", None),
                            ("insert", "citizen-1"), ("remove", None)]
    assert runner.taken == [flow.RatingChosen(5), flow.RatingChosen(5)]


def test_script_wait_that_never_comes_names_line_and_screen():
    steps = script.parse("ok\nwait rating 0.05\n")
    driver = script.ScriptDriver(FakeRunner(), steps)
    driver.start()
    assert driver.done.wait(5)
    assert "line 2" in str(driver.error) and "shows idle" in str(driver.error)


def test_script_card_step_without_emulator_is_a_clear_error():
    driver = script.ScriptDriver(FakeRunner(), script.parse("insert default\n"))
    driver.start()
    assert driver.done.wait(5)
    assert "no emulator is running" in str(driver.error)
    assert not any(t.name == "script" and t.is_alive() for t in threading.enumerate())


def test_script_stopped_from_outside_is_not_a_failure():
    driver = script.ScriptDriver(FakeRunner(), script.parse("wait rating 30\n"))
    driver.start()
    driver.stop()
    assert driver.done.wait(5)
    assert driver.error is None


def test_script_error_is_a_kiosk_error_so_the_cli_prints_it_without_traceback():
    from kiosk.errors import KioskError

    with pytest.raises(KioskError):
        script.parse("fly away\n")
