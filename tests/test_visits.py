"""Complete visits through the whole kiosk: emulated card, touch screen, SQLite, broker, collector.

Each test drives the real runner (the test thread is its main loop) and then checks both ends:
the rows the kiosk committed and the rows the collector stored and acknowledged.
"""

import json
import logging
from urllib.parse import parse_qs, urlparse

import pytest

from kiosk import flow
from kiosk.flow import Screen
from kiosk.telemetry import topics


def test_visits_touch_visit_is_recorded_and_reaches_the_collector(kiosk_world):
    world = kiosk_world
    world.start_kiosk()
    service = world.runner.cfg.services[1].id
    world.insert("citizen-0")
    world.remove(Screen.CHOOSE_SERVICE)  # the card back first, then the questions
    world.tap(flow.LanguageToggled(), Screen.CHOOSE_SERVICE)
    assert world.runner.state.language == "en"
    world.tap(flow.ServiceChosen(service), Screen.COPY_CHECK)
    world.tap(flow.CopyAnswered("id_card"), Screen.RATING)
    world.tap(flow.RatingChosen(2), Screen.REASON)
    world.tap(flow.ReasonChosen("staff"), Screen.CONFIRM)
    world.put(flow.Dismissed(), Screen.THANK_YOU)
    world.tap(flow.Dismissed(), Screen.IDLE)
    world.wait_for_confirmed(1)

    (visit,) = world.visits()
    answers = (visit.outcome, visit.step, visit.verified, visit.expired, visit.service_id,
               visit.copy_answer, visit.rating, visit.reason, visit.language,
               visit.card_in_at_commit, visit.undone)
    assert answers == ("completed", "confirm", True, False, service, "id_card", 2, "staff", "en",
                       False, False)
    (collected,) = world.collected()
    assert collected.event_id == visit.event_id
    assert (collected.outcome, collected.step, collected.verified, collected.expired,
            collected.service_id, collected.copy_answer, collected.rating, collected.reason,
            collected.language, collected.card_in_at_commit, collected.undone) == answers
    assert not collected.is_demo
    # Its hour, and no finer time, at both ends.
    assert (collected.period, collected.period_s) == (visit.period, visit.period_s)
    assert visit.period_s == 3600 and visit.period.endswith(":00:00Z")
    # Every screen of the visit was drawn, in English from the tap on; idle is Thai again.
    assert world.shown == [
        (Screen.IDLE, "th"), (Screen.READING, "th"), (Screen.RETURN_CARD, "th"),
        (Screen.CHOOSE_SERVICE, "th"), (Screen.CHOOSE_SERVICE, "en"), (Screen.COPY_CHECK, "en"),
        (Screen.RATING, "en"), (Screen.REASON, "en"), (Screen.CONFIRM, "en"),
        (Screen.THANK_YOU, "en"), (Screen.IDLE, "th")]


def card_taken(world, profile):
    """A citizen inserts the card and takes it back when asked: the first question."""
    world.insert(profile)
    world.remove(Screen.CHOOSE_SERVICE)


def answer_questions(world, rating=5, service=0):
    """Service, copy and rating as the flow events the touch screen gives; a rating above
    the reason question's is sent at once."""
    world.put(flow.ServiceChosen(world.runner.cfg.services[service].id), Screen.COPY_CHECK)
    world.put(flow.CopyAnswered("none"), Screen.RATING)
    world.put(flow.RatingChosen(rating), Screen.REASON if rating <= 2 else Screen.CONFIRM)
    if rating > 2:
        world.put(flow.Dismissed(), Screen.THANK_YOU)


def outcomes(rows):
    return [(row.outcome, row.step, row.verified) for row in rows]


def test_visits_card_pulled_mid_read_is_a_card_problem_and_records_nothing(kiosk_world):
    world = kiosk_world
    world.start_kiosk()
    world.card.set_fault(pull_after=2)  # gone after the second APDU of the read
    world.insert("citizen-1", Screen.CARD_PROBLEM)
    assert world.runner.state.problem == "removed"
    assert world.store.VisitRow.select().count() == 0
    assert len(world.runner.seen) == 0
    world.tap(flow.Dismissed(), Screen.IDLE)

    # The kiosk carries on: the same card, read properly, is a first visit, not a repeat.
    world.card.clear_faults()
    card_taken(world, "citizen-1")
    answer_questions(world)
    world.put(flow.Dismissed(), Screen.IDLE)
    world.wait_for_confirmed(1)
    assert outcomes(world.visits()) == [("completed", "confirm", True)]
    assert [v.event_id for v in world.collected()] == [v.event_id for v in world.visits()]


def test_visits_repeat_is_told_already_rated_but_a_second_service_is_rated(kiosk_world):
    world = kiosk_world
    world.start_kiosk()
    card_taken(world, "citizen-2")
    answer_questions(world, rating=4)
    world.put(flow.Dismissed(), Screen.IDLE)

    card_taken(world, "citizen-2")
    world.put(flow.ServiceChosen(world.runner.cfg.services[0].id), Screen.ALREADY_RATED)
    world.tap(flow.Dismissed(), Screen.IDLE)
    card_taken(world, "citizen-2")
    answer_questions(world, rating=3, service=1)  # within the window, another service
    world.put(flow.Dismissed(), Screen.IDLE)
    world.wait_for_confirmed(2)
    rated = sorted((v.service_id, v.rating) for v in world.visits())
    assert rated == sorted((world.runner.cfg.services[n].id, rating)
                           for n, rating in ((0, 4), (1, 3)))
    assert sorted((v.service_id, v.rating) for v in world.collected()) == rated


def test_visits_rating_without_card_is_recorded_unverified(kiosk_world):
    world = kiosk_world
    world.start_kiosk(flow={"allow_rating_without_card": True})
    world.tap(flow.StartedWithoutCard(), Screen.CHOOSE_SERVICE)
    world.tap(flow.ServiceChosen(world.runner.cfg.services[2].id), Screen.COPY_CHECK)
    world.tap(flow.CopyAnswered("both"), Screen.RATING)
    world.tap(flow.RatingChosen(3), Screen.CONFIRM)
    world.put(flow.Dismissed(), Screen.THANK_YOU)
    world.tap(flow.Dismissed(), Screen.IDLE)  # no card in the reader: straight back to idle
    world.wait_for_confirmed(1)
    (visit,) = world.visits()
    assert (visit.verified, visit.expired, visit.copy_answer, visit.rating,
            visit.card_in_at_commit) == (False, None, "both", 3, None)
    (collected,) = world.collected()
    assert (collected.event_id, collected.verified, collected.expired, collected.rating) == (
        visit.event_id, False, None, 3)


def test_visits_leave_no_moment_in_the_log_and_the_qr_token_nowhere(kiosk_world, caplog):
    """Issue 11: the journal's time stamps must not time a visit, so nothing the kiosk logs at
    INFO or above marks one, from the card going in to its coming out (the reason screen would
    even tell a low rating); and the QR code's token is never stored or sent."""
    world = kiosk_world
    world.start_kiosk()
    caplog.set_level(logging.DEBUG, logger="kiosk")
    caplog.clear()
    world.card.set_fault(pull_after=2)  # a card pulled mid-read first: a citizen's moment too
    world.insert("citizen-3", Screen.CARD_PROBLEM)
    world.tap(flow.Dismissed(), Screen.IDLE)
    world.card.clear_faults()
    card_taken(world, "citizen-3")
    answer_questions(world, rating=1)
    world.put(flow.ReasonChosen("staff"), Screen.CONFIRM)
    world.put(flow.Dismissed(), Screen.THANK_YOU)
    world.runner.turn(timeout=0)  # draw the thank-you screen and its QR code
    (token,) = parse_qs(urlparse(world.runner.display._portal_url).query)["t"]
    world.put(flow.Dismissed(), Screen.IDLE)
    kiosk_side = [r for r in caplog.records if not r.name.startswith("kiosk.fleet")]
    assert [r.getMessage() for r in kiosk_side if r.levelno >= logging.INFO] == []
    assert any("screen rating -> reason" in r.getMessage() for r in kiosk_side)  # at DEBUG
    assert any("card read failed" in r.getMessage() for r in kiosk_side)
    world.wait_for_confirmed(1)

    world.store.checkpoint()
    files = sorted(world.store.data_dir.glob("kiosk.db*")) + [world.collector.db_path]
    assert all(token.encode() not in path.read_bytes() for path in files)
    captured = world.wiretap.received(f"{topics.ROOT}/#")
    assert any(m.topic == topics.kiosk_topic(world.runner.cfg.kiosk.id, "visit")
               and json.loads(m.payload)["reason"] == "staff" for m in captured)
    assert all(token.encode() not in m.payload for m in captured)


# --- timeouts: every screen with a deadline ends by itself ------------------------------------
# Each case brings the kiosk to a screen and then only turns the loop: no tap, no card moved.
# Every chain ends at idle, or at take-card while the card is in (taking it then brings idle).
# ``expected`` is what must be recorded (and collected) by then: (outcome, step, verified).
# A card never taken through a whole visit: tests/test_script.py.


def to_reading(world):
    world.card.set_fault(frozen=True)  # the card never answers: only the flow's deadline helps
    world.insert("citizen-10", Screen.READING)


def to_already_rated(world):
    card_taken(world, "citizen-11")
    answer_questions(world)
    world.put(flow.Dismissed(), Screen.IDLE)
    card_taken(world, "citizen-11")
    world.put(flow.ServiceChosen(world.runner.cfg.services[0].id), Screen.ALREADY_RATED)


def to_return_card(world):
    world.insert("citizen-12")  # and then nobody answers, with the card left in


def without_card(answered=0, rating=5):
    """No card: start, then answer the first ``answered`` questions (service, copy, rating)."""

    def drive(world):
        world.put(flow.StartedWithoutCard(), Screen.CHOOSE_SERVICE)
        steps = [(flow.ServiceChosen(world.runner.cfg.services[0].id), Screen.COPY_CHECK),
                 (flow.CopyAnswered("none"), Screen.RATING),
                 (flow.RatingChosen(rating), Screen.REASON if rating <= 2 else Screen.CONFIRM)]
        for event, screen in steps[:answered]:
            world.put(event, screen)

    return drive


TIMEOUT_CASES = {
    # reading times out into a card problem, and with the card still in, into take-card
    "reading": (to_reading, [Screen.READING, Screen.CARD_PROBLEM, Screen.TAKE_CARD], []),
    "already_rated": (to_already_rated, [Screen.ALREADY_RATED, Screen.IDLE],
                      [("completed", "confirm", True)]),
    "choose_service": (without_card(), [Screen.CHOOSE_SERVICE, Screen.IDLE],
                       [("abandoned", "choose_service", False)]),
    "copy_check": (without_card(1), [Screen.COPY_CHECK, Screen.IDLE],
                   [("abandoned", "copy_check", False)]),
    "rating": (without_card(2), [Screen.RATING, Screen.IDLE],
               [("abandoned", "rating", False)]),
    "reason": (without_card(3, rating=1), [Screen.REASON, Screen.IDLE],
               [("abandoned", "reason", False)]),
    # nobody changed the answer: it is sent, and the thank-you ends by itself too
    "confirm": (without_card(3, rating=5), [Screen.CONFIRM, Screen.THANK_YOU, Screen.IDLE],
                [("completed", "confirm", False)]),
    # the card is not taken back: the questions go on, the visit is abandoned with the card
    # in, and take-card asks until it is taken
    "return_card": (to_return_card, [Screen.RETURN_CARD, Screen.CHOOSE_SERVICE,
                                     Screen.TAKE_CARD], [("abandoned", "choose_service", True)]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", TIMEOUT_CASES)
def test_visits_timeout_ends_every_screen_by_itself(kiosk_world, case):
    drive, screens, expected = TIMEOUT_CASES[case]
    world = kiosk_world
    world.start_kiosk(flow={"allow_rating_without_card": True})
    drive(world)
    mark = len(world.shown) - 1
    if case == "reading":
        world.wait_for_screen(Screen.CARD_PROBLEM)
        assert world.runner.state.problem == "timeout"
    # The longest chain is 3 s + 5 s; the wait allows for a busy machine.
    world.wait_for_screen(screens[-1], timeout=30)
    assert [screen for screen, _ in world.shown[mark:]] == screens
    if screens[-1] is Screen.TAKE_CARD:
        world.remove()  # only taking the card brings idle
    world.wait_for_confirmed(len(expected))
    assert outcomes(world.visits()) == expected
    assert outcomes(world.collected()) == expected
    assert [v.event_id for v in world.collected()] == [v.event_id for v in world.visits()]
    world.card.remove()  # a frozen read ends when its card goes
    assert world.runner.card.wait_for_idle(10)
