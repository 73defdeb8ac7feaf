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
