"""Scripted visits: parsing reports every bad line; the driver plays taps through the queue;
and one visit played on the real stack (pcscd + vpcd + emulated card, SQLite, broker,
collector) by a citizen who never takes the card."""

import logging
import threading

import pytest

from kiosk import flow, script
from kiosk.flow import Screen


def test_script_parses_steps_and_comments():
    steps = script.parse("insert citizen-{n}  # a card\nwait rating 5\nrating 4\n\nreason skip\n"
                         "back\nchange\n")
    assert [(s.verb, s.arg) for s in steps] == [
        ("insert", "citizen-{n}"), ("wait", "rating"), ("rating", "4"), ("reason", "skip"),
        ("back", None), ("change", None)]
    assert steps[1].timeout_s == 5.0


def test_script_reports_every_bad_line_with_its_number():
    with pytest.raises(script.ScriptError) as caught:
        script.parse("rating 9\nwait nowhere\nfly away\nok\nback now\n", "visits.txt")
    lines = str(caught.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["1", "2", "3", "5"]
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


def _played(runner, text, repeat=1, **options):
    """Plays ``text`` ``repeat`` times against ``runner`` to its end; the driver and the card."""
    card = FakeCard()
    driver = script.ScriptDriver(runner, script.parse(text), repeat=repeat, card=card, **options)
    driver.start()
    assert driver.done.wait(5)
    return driver, card


def test_script_driver_repeats_with_numbered_cards():
    runner = FakeRunner()
    driver, card = _played(runner, "insert citizen-{n}\nrating 5\nwait thank_you 2\nremove\n",
                           repeat=2)
    assert driver.error is None and driver.completed == 2
    assert card.history == [("insert", "citizen-0"), ("remove", None),
                            ("insert", "citizen-1"), ("remove", None)]
    assert runner.taken == [flow.RatingChosen(5), flow.RatingChosen(5)]


def test_script_cycles_cards_with_the_repetition_number_modulo():
    _, card = _played(FakeRunner(), "insert citizen-{n%3}\nremove\n", repeat=2, first=2)
    assert card.history == [("insert", "citizen-2"), ("remove", None),
                            ("insert", "citizen-0"), ("remove", None)]


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


#: The citizen answers, sends, taps Done, and walks away with the card still in the reader.
CARD_NEVER_TAKEN = """
insert citizen-20
wait return_card
wait choose_service 15  # not taken: after return_card_s the questions go on
service id-card
wait copy_check
copy not_sure
wait rating
rating 4
wait confirm
ok
wait thank_you
ok
wait take_card
sleep 1                 # nobody comes: the kiosk keeps asking
"""


def test_script_card_never_taken_is_asked_for_recorded_and_idle_only_once_taken(kiosk_world,
                                                                                caplog):
    world = kiosk_world
    world.start_kiosk(display=False)  # the script is the citizen; the runner logs each screen
    caplog.set_level(logging.DEBUG, logger="kiosk.runner")
    buzzer = world.runner.panel.buzzer.pin
    mark = len(buzzer.states)
    driver = script.ScriptDriver(world.runner, script.parse(CARD_NEVER_TAKEN), card=world.card)
    driver.start()
    world.run_until(driver.done.is_set, "the script", timeout=30)
    assert driver.error is None
    # Still asking, and never once "insert your card" with the card in.
    assert world.runner.state.screen is Screen.TAKE_CARD and world.runner.state.card_present
    assert shown(caplog) == ["idle", "reading", "return_card", "choose_service", "copy_check",
                             "rating", "confirm", "thank_you", "take_card"]
    # A reminder is two notes on the buzzer: one when the questions went on, then take-card's,
    # again and again.
    world.run_until(lambda: sum(1 for change in buzzer.states[mark:] if change.state) >= 6,
                    "three take-your-card reminders on the buzzer")
    assert world.runner.state.screen is Screen.TAKE_CARD
    (visit,) = world.visits()
    assert (visit.outcome, visit.verified, visit.copy_answer, visit.rating,
            visit.card_in_at_commit, visit.undone) == (
        "completed", True, "not_sure", 4, True, False)
    world.remove()  # only now: idle
    assert shown(caplog)[-1] == "idle"
    world.wait_for_confirmed(1)
    assert [(v.event_id, v.card_in_at_commit) for v in world.collected()] == [
        (visit.event_id, True)]


def shown(caplog):
    """The screens in the order the runner went through them (its DEBUG log)."""
    moves = [r.getMessage().split()[1:] for r in caplog.records
             if r.name == "kiosk.runner" and r.getMessage().startswith("screen ")]
    return [moves[0][0], *(move[2] for move in moves)] if moves else []


class FirstRatingLost(FakeRunner):
    """The first rating tap goes nowhere (a fault), so that repetition's wait fails."""

    def put(self, event):
        if isinstance(event, flow.RatingChosen) and not any(
                isinstance(e, flow.RatingChosen) for e in self.taken):
            self.taken.append(event)
            return
        super().put(event)


def test_script_keep_going_takes_the_card_out_and_plays_the_next_repetition(caplog):
    runner, card = FirstRatingLost(), FakeCard()
    steps = script.parse("insert citizen-{n}\nrating 5\nwait thank_you 0.1\nremove\n")
    driver = script.ScriptDriver(runner, steps, repeat=3, card=card, keep_going=True,
                                 recover_s=1)
    with caplog.at_level(logging.WARNING, logger="kiosk.script"):
        driver.start()
        assert driver.done.wait(5)
    assert driver.error is None
    assert (driver.completed, driver.recovered) == (2, 1)
    # The failed repetition's card came out before the next went in.
    assert card.history == [("insert", "citizen-0"), ("remove", None),
                            ("insert", "citizen-1"), ("remove", None),
                            ("insert", "citizen-2"), ("remove", None)]
    assert any("line 3" in r.getMessage() for r in caplog.records)


def test_script_numbers_from_first_and_reports_what_each_repetition_saw():
    """A soak restarts a killed kiosk at the repetition it reached and keeps its own record of
    every thank-you the citizen saw, from these reports."""
    heard = []
    driver, card = _played(FirstRatingLost(),
                           "insert citizen-{n}\nrating 5\nwait thank_you 0.1\nremove\n",
                           repeat=3, first=7, keep_going=True, recover_s=1,
                           progress=lambda n, what: heard.append((n, what)))
    assert driver.error is None and (driver.completed, driver.recovered) == (2, 1)
    assert [profile for verb, profile in card.history if verb == "insert"] == [
        "citizen-7", "citizen-8", "citizen-9"]
    assert heard == [(7, "recovered"), (8, "thank_you"), (8, "done"), (9, "thank_you"),
                     (9, "done")]


def test_script_without_keep_going_a_failed_wait_still_ends_the_script():
    driver, card = _played(FirstRatingLost(),
                           "insert citizen-{n}\nrating 5\nwait thank_you 0.1\nremove\n", repeat=3)
    assert isinstance(driver.error, script.WaitTimedOut)
    assert (driver.completed, driver.recovered) == (0, 0)
    assert card.history == [("insert", "citizen-0")]


def test_script_keep_going_fails_naming_the_screen_a_kiosk_is_stuck_on():
    runner = FakeRunner()
    runner.state = flow.State(screen=Screen.CONFIRM)  # and it never leaves it
    driver = script.ScriptDriver(runner, script.parse("wait rating 0.05\n"), repeat=5,
                                 keep_going=True, recover_s=0.2)
    driver.start()
    assert driver.done.wait(5)
    assert "did not return to idle within 0.2 s" in str(driver.error)
    assert "stuck on confirm" in str(driver.error)
    assert (driver.completed, driver.recovered) == (0, 0)


class FrozenFirstCard:
    """The emulator's control client, with the first card frozen mid-read (the soak's
    ``card_frozen`` fault) until it is taken out."""

    def __init__(self, emulator):
        self.emulator, self.inserted = emulator, 0

    def insert(self, profile):
        self.inserted += 1
        if self.inserted == 1:
            self.emulator.set_fault(frozen=True)
        self.emulator.insert(profile)

    def remove(self):
        self.emulator.remove()
        self.emulator.set_fault(clear=True)


ONE_VISIT = """
insert citizen-{n}
wait return_card 2
remove
wait choose_service
service id-card
wait copy_check
copy none
wait rating
rating 5
wait confirm
ok
wait thank_you
wait idle 15
"""


@pytest.mark.slow
def test_script_keep_going_recovers_from_a_frozen_card_and_plays_on(kiosk_world):
    world = kiosk_world
    world.start_kiosk(display=False)
    driver = script.ScriptDriver(world.runner, script.parse(ONE_VISIT), repeat=2,
                                 card=FrozenFirstCard(world.card), keep_going=True, recover_s=30)
    driver.start()
    world.run_until(driver.done.is_set, "the script", timeout=60)
    assert driver.error is None
    assert (driver.completed, driver.recovered) == (1, 1)
    completed = [v for v in world.visits() if v.outcome == "completed"]
    assert len(completed) == 1 and completed[0].rating == 5
    assert world.runner.state.screen is Screen.IDLE


def played_run(*, depth, held, wait_confirmed=0.0, completed=1, recovered=0, recorded=1):
    """``kiosk run``'s end of a script (``run._play``) against a kiosk whose script ended so
    and whose outbox holds ``depth`` + ``held`` messages: its exit status, or its error."""
    from types import SimpleNamespace

    from kiosk import run

    driver = SimpleNamespace(completed=completed, recovered=recovered, error=None)
    kiosk = SimpleNamespace(
        play=lambda steps, stop, **options: driver,
        store=SimpleNamespace(outbox_stats=lambda: SimpleNamespace(depth=depth, held=held)),
        runner=SimpleNamespace(recorded=recorded))
    args = SimpleNamespace(emulator=None, repeat=completed + recovered, first=0,
                           wait_confirmed=wait_confirmed, keep_going=True, recover_s=180.0,
                           progress=False)
    return run._play(kiosk, (), args, threading.Event())


def test_script_run_that_could_not_get_its_visits_confirmed_fails():
    """A soak tells a drained kiosk from one whose wait ran out by the exit status."""
    from kiosk.errors import KioskError

    with pytest.raises(KioskError, match="3 message\\(s\\) still unconfirmed"):
        played_run(depth=2, held=1, wait_confirmed=5.0)
    # Not asked to wait: what is queued goes with the next run.
    assert played_run(depth=2, held=1) == 0


def test_script_run_summary_says_how_many_repetitions_recovered(capsys):
    assert played_run(depth=0, held=3, completed=7, recovered=2, recorded=9) == 0
    assert "played 7 time(s), 2 recovered, 9 visit(s)" in capsys.readouterr().out
