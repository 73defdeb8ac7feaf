"""Complete visits through the whole kiosk: emulated card, touch screen, SQLite, broker, collector.

Each test drives the real runner (the test thread is its main loop) and then checks both ends:
the rows the kiosk committed and the rows the collector stored and acknowledged.
"""

import pytest

from kiosk import flow
from kiosk.flow import Screen


def test_visits_touch_visit_is_recorded_and_reaches_the_collector(kiosk_world):
    world = kiosk_world
    world.start_kiosk()
    service = world.runner.cfg.services[1].id
    world.insert("citizen-0")
    world.tap(flow.LanguageToggled(), Screen.CHOOSE_SERVICE)
    assert world.runner.state.language == "en"
    world.tap(flow.ServiceChosen(service), Screen.COPY_CHECK)
    world.tap(flow.CopyAnswered("id_card"), Screen.RATING)
    world.tap(flow.RatingChosen(2), Screen.REASON)
    world.tap(flow.ReasonChosen("copies_requested"), Screen.THANK_YOU)
    world.tap(flow.Dismissed(), Screen.TAKE_CARD)
    world.remove()
    world.wait_for_confirmed(1)

    (visit,) = world.visits()
    answers = (visit.outcome, visit.step, visit.verified, visit.expired, visit.service_id,
               visit.copy_answer, visit.rating, visit.reason, visit.language)
    assert answers == ("completed", "reason", True, False, service, "id_card", 2,
                       "copies_requested", "en")
    (collected,) = world.collected()
    assert collected.event_id == visit.event_id
    assert (collected.outcome, collected.step, collected.verified, collected.expired,
            collected.service_id, collected.copy_answer, collected.rating, collected.reason,
            collected.language) == answers
    assert not collected.is_demo
    # Every screen of the visit was drawn, in English from the tap on; idle is Thai again.
    assert world.shown == [
        (Screen.IDLE, "th"), (Screen.READING, "th"), (Screen.CHOOSE_SERVICE, "th"),
        (Screen.CHOOSE_SERVICE, "en"), (Screen.COPY_CHECK, "en"), (Screen.RATING, "en"),
        (Screen.REASON, "en"), (Screen.THANK_YOU, "en"), (Screen.TAKE_CARD, "en"),
        (Screen.IDLE, "th")]


def answer_questions(world, rating=5):
    """Service, copy and rating as the flow events the touch screen gives."""
    world.put(flow.ServiceChosen(world.runner.cfg.services[0].id), Screen.COPY_CHECK)
    world.put(flow.CopyAnswered("none"), Screen.RATING)
    world.put(flow.RatingChosen(rating), Screen.REASON if rating <= 2 else Screen.THANK_YOU)


def outcomes(rows):
    return [(row.outcome, row.step, row.verified) for row in rows]


def test_visits_card_pulled_mid_read_is_a_card_problem_and_records_nothing(kiosk_world):
    world = kiosk_world
    world.start_kiosk()
    world.card.set_fault(pull_after=2)  # gone after the second APDU of the read
    world.insert("citizen-1", Screen.CARD_PROBLEM)
    assert world.runner.state.problem == "removed"
    assert world.store.Visit.select().count() == 0
    assert world.store.SeenCard.select().count() == 0
    world.tap(flow.Dismissed(), Screen.IDLE)

    # The kiosk carries on: the same card, read properly, is a first visit, not a repeat.
    world.card.clear_faults()
    world.insert("citizen-1")
    answer_questions(world)
    world.put(flow.Dismissed(), Screen.TAKE_CARD)
    world.remove()
    world.wait_for_confirmed(1)
    assert outcomes(world.visits()) == [("completed", "rating", True)]
    assert [v.event_id for v in world.collected()] == [v.event_id for v in world.visits()]


def test_visits_repeat_card_is_told_already_rated_and_recorded_once(kiosk_world):
    world = kiosk_world
    world.start_kiosk()
    world.insert("citizen-2")
    answer_questions(world, rating=4)
    world.put(flow.Dismissed(), Screen.TAKE_CARD)
    world.remove()

    world.insert("citizen-2", Screen.ALREADY_RATED)
    world.tap(flow.Dismissed(), Screen.IDLE)
    world.remove()
    world.wait_for_confirmed(1)
    (visit,) = world.visits()
    assert (visit.outcome, visit.rating, visit.verified) == ("completed", 4, True)
    assert [(v.event_id, v.rating) for v in world.collected()] == [(visit.event_id, 4)]


def test_visits_rating_without_card_is_recorded_unverified(kiosk_world):
    world = kiosk_world
    world.start_kiosk(flow={"allow_rating_without_card": True})
    world.tap(flow.StartedWithoutCard(), Screen.CHOOSE_SERVICE)
    world.tap(flow.ServiceChosen(world.runner.cfg.services[2].id), Screen.COPY_CHECK)
    world.tap(flow.CopyAnswered("both"), Screen.RATING)
    world.tap(flow.RatingChosen(3), Screen.THANK_YOU)
    world.tap(flow.Dismissed(), Screen.IDLE)  # no card in the reader: straight back to idle
    world.wait_for_confirmed(1)
    (visit,) = world.visits()
    assert (visit.verified, visit.expired, visit.copy_answer, visit.rating) == (
        False, None, "both", 3)
    (collected,) = world.collected()
    assert (collected.event_id, collected.verified, collected.expired, collected.rating) == (
        visit.event_id, False, None, 3)


@pytest.mark.slow
def test_visits_card_left_in_after_thank_you_beeps_until_taken(kiosk_world):
    world = kiosk_world
    # A long take-card deadline: reaching idle can then only be the card being taken.
    world.start_kiosk(flow={"take_card_s": 60})
    buzzer = world.runner.panel.buzzer.pin
    world.insert("citizen-3")
    answer_questions(world)
    world.wait_for_screen(Screen.TAKE_CARD)  # thank-you ended by itself, the card still in
    mark = len(buzzer.states)

    def notes():
        return sum(1 for change in buzzer.states[mark:] if change.state)

    # A reminder is two notes on the GPIO buzzer; wait for the second reminder's.
    world.run_until(lambda: notes() >= 4, "two take-your-card reminders on the buzzer")
    world.remove()
    assert world.runner.state.screen is Screen.IDLE
    world.wait_for_confirmed(1)
    assert outcomes(world.collected()) == [("completed", "rating", True)]
