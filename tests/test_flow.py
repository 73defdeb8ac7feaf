"""The visit flow: every screen × every event, timeouts on a fake clock, the house rules."""

import dataclasses
import tomllib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk import config, flow
from kiosk.flow import (
    Back,
    Beep,
    CardFailed,
    CardInserted,
    CardRead,
    CardRemoved,
    ChangeAnswer,
    CheckRepeat,
    CopyAnswered,
    Dismissed,
    FlowSettings,
    LanguageToggled,
    RatingChosen,
    ReadCard,
    ReasonChosen,
    RecordVisit,
    RepeatChecked,
    Screen,
    ServiceChosen,
    ServiceResumed,
    ServiceSuspended,
    SetStatusLight,
    ShowScreen,
    StartedWithoutCard,
    State,
    Tick,
)
from kiosk.visit import OTHER_SERVICE

S = Screen
TIMEOUTS = {
    S.READING: 10.0, S.RETURN_CARD: 9.0, S.CARD_PROBLEM: 8.0, S.ALREADY_RATED: 8.0,
    S.CHOOSE_SERVICE: 30.0, S.COPY_CHECK: 31.0, S.RATING: 32.0, S.REASON: 33.0, S.CONFIRM: 6.0,
}
SETTINGS = FlowSettings(timeouts=TIMEOUTS, service_ids=("id-card", "house-reg"),
                        thank_you_s=30.0, take_card_s=120.0, reminder_s=5.0,
                        allow_rating_without_card=True, ask_reason_at_or_below=2)
HASH = b"\x01" * 32


class FlowDriver:
    """Drives the flow like the runner does and keeps the history of effects.

    ``repeats`` answers every ``CheckRepeat`` the way the runner does, at once: the services
    this card already rated (None: the test answers by hand).
    """

    def __init__(self, settings=SETTINGS, now=1000.0, repeats=()):
        self.settings = settings
        self.now = now
        self.state = State()
        self.effects = []
        self.repeats = repeats

    def send(self, *events):
        for event in events:
            self.state, effects = flow.step(self.state, event, self.now, self.settings)
            self.effects.extend(effects)
            for effect in effects:
                if isinstance(effect, CheckRepeat) and self.repeats is not None:
                    self.send(RepeatChecked(effect.service_id in self.repeats))
        return self

    def wait(self, seconds):
        self.now += seconds
        return self.send(Tick())

    def records(self):
        return [e.record for e in self.effects if isinstance(e, RecordVisit)]

    def beeps(self):
        return [e.kind for e in self.effects if isinstance(e, Beep)]

    def checks(self):
        return [e for e in self.effects if isinstance(e, CheckRepeat)]


def read_ok(expired=False):
    return CardRead(repeat_hash=HASH, expired=expired)


#: After the read the card is taken (the first question's path), or left in the reader until
#: the card-return wait is over: ``reach(screen, card_in=True)``.
ANSWERS = {
    S.CHOOSE_SERVICE: (),
    S.ALREADY_RATED: (ServiceChosen("id-card"), RepeatChecked(True)),
    S.COPY_CHECK: (ServiceChosen("id-card"), RepeatChecked(False)),
    S.RATING: (ServiceChosen("id-card"), RepeatChecked(False), CopyAnswered("none")),
    S.REASON: (ServiceChosen("id-card"), RepeatChecked(False), CopyAnswered("none"),
               RatingChosen(1)),
    S.CONFIRM: (ServiceChosen("id-card"), RepeatChecked(False), CopyAnswered("none"),
                RatingChosen(5)),
    S.THANK_YOU: (ServiceChosen("id-card"), RepeatChecked(False), CopyAnswered("none"),
                  RatingChosen(5), Dismissed()),
}
# The other screens, as a citizen reaches them from idle.
PATHS = {
    S.IDLE: (),
    S.READING: (CardInserted(),),
    S.RETURN_CARD: (CardInserted(), read_ok()),
    S.CARD_PROBLEM: (CardInserted(), CardFailed("unreadable")),  # the card is still in
    S.TAKE_CARD: (CardInserted(), CardFailed("unreadable"), Dismissed()),
    S.OUT_OF_SERVICE: (ServiceSuspended("disk below floor"),),
}

EVENTS = {
    "CardInserted": CardInserted(),
    "CardRead": read_ok(),
    "CardFailed": CardFailed("not_thai_id"),
    "CardRemoved": CardRemoved(),
    "LanguageToggled": LanguageToggled(),
    "StartedWithoutCard": StartedWithoutCard(),
    "ServiceChosen": ServiceChosen("house-reg"),
    "CopyAnswered": CopyAnswered("both"),
    "RatingChosen": RatingChosen(4),
    "RatingChosenLow": RatingChosen(2),
    "ReasonChosen": ReasonChosen("staff"),
    "Back": Back(),
    "ChangeAnswer": ChangeAnswer(),
    "RepeatChecked": RepeatChecked(False),
    "RepeatCheckedRepeat": RepeatChecked(True),  # with no check asked: stale, ignored
    "Dismissed": Dismissed(),
    "Tick": Tick(),
    "ServiceSuspended": ServiceSuspended("fault"),
    "ServiceResumed": ServiceResumed(),
}

# The transition table: (screen, event) -> screen, the card taken after the read. Every pair
# not listed leaves the screen as it is.
TABLE = {
    (S.IDLE, "CardInserted"): S.READING,
    (S.IDLE, "StartedWithoutCard"): S.CHOOSE_SERVICE,
    (S.READING, "CardRead"): S.RETURN_CARD,
    (S.READING, "CardFailed"): S.CARD_PROBLEM,
    (S.READING, "CardRemoved"): S.CARD_PROBLEM,
    (S.RETURN_CARD, "CardRemoved"): S.CHOOSE_SERVICE,
    (S.CARD_PROBLEM, "Dismissed"): S.TAKE_CARD,  # "Try again": take it out first
    (S.CARD_PROBLEM, "StartedWithoutCard"): S.CHOOSE_SERVICE,
    (S.ALREADY_RATED, "Dismissed"): S.IDLE,
    (S.ALREADY_RATED, "CardInserted"): S.READING,
    (S.CHOOSE_SERVICE, "ServiceChosen"): S.COPY_CHECK,
    (S.CHOOSE_SERVICE, "Back"): S.IDLE,  # out of the first question: abandoned
    (S.COPY_CHECK, "CopyAnswered"): S.RATING,
    (S.COPY_CHECK, "Back"): S.CHOOSE_SERVICE,
    (S.RATING, "RatingChosen"): S.CONFIRM,
    (S.RATING, "RatingChosenLow"): S.REASON,
    (S.RATING, "Back"): S.COPY_CHECK,
    (S.REASON, "ReasonChosen"): S.CONFIRM,
    (S.REASON, "Back"): S.RATING,
    (S.CONFIRM, "Dismissed"): S.THANK_YOU,
    (S.CONFIRM, "ChangeAnswer"): S.RATING,
    (S.CONFIRM, "Back"): S.RATING,
    (S.THANK_YOU, "Dismissed"): S.IDLE,
    (S.THANK_YOU, "CardInserted"): S.READING,  # the visit is committed: a new card is read
    (S.TAKE_CARD, "CardRemoved"): S.IDLE,
    (S.OUT_OF_SERVICE, "ServiceResumed"): S.IDLE,
}
for screen in S:
    TABLE[(screen, "ServiceSuspended")] = S.OUT_OF_SERVICE
#: Where the card left in after the read makes a difference: never idle while it is in.
CARD_IN = {
    (S.CHOOSE_SERVICE, "Back"): S.TAKE_CARD,
    (S.ALREADY_RATED, "Dismissed"): S.TAKE_CARD,
    (S.ALREADY_RATED, "CardInserted"): S.ALREADY_RATED,
    (S.THANK_YOU, "Dismissed"): S.TAKE_CARD,
    (S.THANK_YOU, "CardInserted"): S.THANK_YOU,
}
#: Events that may change the state (a card noted, a deadline restarted) but not the screen.
QUIET = ("LanguageToggled", "CardInserted", "CardRemoved", "Tick", "ServiceSuspended")


def reach(screen, settings=SETTINGS, card_in=False):
    kiosk = FlowDriver(settings, repeats=None)
    if screen in ANSWERS:
        kiosk.send(CardInserted(), read_ok())
        if card_in:
            kiosk.wait(TIMEOUTS[S.RETURN_CARD])
        else:
            kiosk.send(CardRemoved())
        kiosk.send(*ANSWERS[screen])
        assert kiosk.state.card_present is card_in
    else:
        kiosk.send(*PATHS[screen])
    assert kiosk.state.screen is screen
    kiosk.effects.clear()
    return kiosk


CASES = [(screen, event, False) for screen in S for event in EVENTS]
CASES += [(screen, event, True) for screen in ANSWERS for event in EVENTS]


@pytest.mark.parametrize(("screen", "event_name", "card_in"), CASES)
def test_flow_every_screen_and_event_follows_the_table(screen, event_name, card_in):
    kiosk = reach(screen, card_in=card_in)
    before = kiosk.state
    kiosk.send(EVENTS[event_name])
    expected = (CARD_IN if card_in else {}).get((screen, event_name),
                                                TABLE.get((screen, event_name), screen))
    assert kiosk.state.screen is expected
    assert not (kiosk.state.card_present and kiosk.state.screen is S.IDLE)
    if expected is not screen:
        assert ShowScreen(expected) in kiosk.effects
        assert SetStatusLight(flow.status_light(expected)) in kiosk.effects
    elif event_name not in QUIET:
        # An event that means nothing here changes nothing and does nothing.
        assert kiosk.state == before
        assert kiosk.effects == []


TIMED = [(s, False) for s in S if s not in (S.IDLE, S.OUT_OF_SERVICE, S.TAKE_CARD)]
TIMED += [(s, True) for s in ANSWERS]


@pytest.mark.parametrize(("screen", "card_in"), TIMED)
def test_flow_every_timed_screen_times_out_but_never_to_idle_with_the_card_in(screen, card_in):
    kiosk = reach(screen, card_in=card_in)
    kiosk.wait(kiosk.state.deadline - kiosk.now - 0.01)
    assert kiosk.state.screen is screen, "left the screen before its deadline"
    kiosk.wait(0.02)
    assert kiosk.state.screen is not screen
    # Whatever follows ends by itself: at idle, or at take-card while the card is in.
    for _ in range(100):
        assert not (kiosk.state.card_present and kiosk.state.screen is S.IDLE)
        kiosk.wait(60)
    if kiosk.state.card_present:
        assert kiosk.state.screen is S.TAKE_CARD and kiosk.state.deadline is None
        kiosk.send(CardRemoved())
    assert kiosk.state.screen is S.IDLE


def test_flow_take_card_beeps_then_goes_quiet_but_stays_until_the_card_is_taken():
    kiosk = reach(S.TAKE_CARD)
    kiosk.wait(5.1).wait(5.1)
    assert kiosk.beeps() == ["reminder", "reminder"]
    kiosk.wait(120)  # take_card_s: no more sound, someone must come for the card
    kiosk.effects.clear()
    kiosk.wait(600)
    assert kiosk.state.screen is S.TAKE_CARD and kiosk.beeps() == []
    kiosk.send(CardRemoved())
    assert kiosk.state.screen is S.IDLE


@pytest.mark.parametrize("screen", flow.QUESTION_SCREENS)
def test_flow_timeout_on_a_question_records_an_abandoned_visit_with_its_step(screen):
    kiosk = reach(screen, card_in=True)
    kiosk.wait(TIMEOUTS[screen] + 0.1)
    (record,) = kiosk.records()
    assert record.outcome == "abandoned"
    assert record.step == screen.value
    assert record.verified is True and record.card_in_at_commit is True
    # The card is still in: the kiosk reminds instead of going idle.
    assert kiosk.state.screen is S.TAKE_CARD


def test_flow_idle_and_out_of_service_have_no_deadline():
    assert reach(S.IDLE).state.deadline is None
    kiosk = reach(S.OUT_OF_SERVICE).wait(10_000)
    assert kiosk.state.screen is S.OUT_OF_SERVICE


#: A whole visit up to the confirm screen, the card taken when asked.
VISIT = (CardInserted(), read_ok(), CardRemoved(), ServiceChosen("id-card"),
         CopyAnswered("none"), RatingChosen(5))


def path_to(screen):
    """The events that bring a card visit to ``screen``, the card taken when asked
    (the driver answers the repeat checks)."""
    return (CardInserted(), read_ok(), CardRemoved(),
            *[e for e in ANSWERS[screen] if not isinstance(e, RepeatChecked)])


def test_flow_complete_visit_commits_after_the_confirm_window_and_before_thanking():
    kiosk = FlowDriver().send(*VISIT)
    assert kiosk.state.screen is S.CONFIRM and kiosk.records() == []
    kiosk.wait(TIMEOUTS[S.CONFIRM] - 0.1)
    assert kiosk.records() == [], "committed while the answer could still be changed"
    kiosk.wait(0.2)
    (record,) = kiosk.records()
    assert (record.outcome, record.step, record.service_id, record.copy_answer,
            record.rating) == ("completed", "confirm", "id-card", "none", 5)
    assert record.verified and record.repeat_hash == HASH and record.reason is None
    assert (record.card_in_at_commit, record.undone) == (False, False)
    assert kiosk.effects.index(RecordVisit(record)) < kiosk.effects.index(ShowScreen(S.THANK_YOU))


def test_flow_ok_on_the_confirm_screen_commits_at_once_before_thanking():
    kiosk = FlowDriver().send(*VISIT, Dismissed())
    (record,) = kiosk.records()
    assert record.outcome == "completed" and kiosk.state.screen is S.THANK_YOU
    assert kiosk.effects.index(RecordVisit(record)) < kiosk.effects.index(ShowScreen(S.THANK_YOU))


def test_flow_undo_asks_the_rating_again_and_records_that_it_was_changed():
    kiosk = FlowDriver().send(*VISIT, ChangeAnswer())
    assert kiosk.state.screen is S.RATING and kiosk.state.visit.rating is None
    assert kiosk.records() == []
    kiosk.send(RatingChosen(1), ReasonChosen("waiting_time"), Dismissed())
    (record,) = kiosk.records()
    assert (record.rating, record.reason, record.undone, record.copy_answer) == (
        1, "waiting_time", True, "none")


def test_flow_undo_then_walking_away_is_abandoned_at_the_rating():
    kiosk = FlowDriver().send(*VISIT, ChangeAnswer()).wait(TIMEOUTS[S.RATING] + 1)
    (record,) = kiosk.records()
    assert (record.outcome, record.step, record.rating, record.undone) == (
        "abandoned", "rating", None, True)


BACK = [(S.COPY_CHECK, S.CHOOSE_SERVICE, "service_id"), (S.RATING, S.COPY_CHECK, "copy_answer"),
        (S.REASON, S.RATING, "rating"), (S.CONFIRM, S.RATING, "rating")]


@pytest.mark.parametrize(("screen", "previous", "cleared"), BACK)
def test_flow_back_returns_to_the_previous_question_and_asks_it_again(screen, previous, cleared):
    kiosk = reach(screen).send(Back())
    assert kiosk.state.screen is previous
    assert getattr(kiosk.state.visit, cleared) is None
    assert kiosk.records() == []


@pytest.mark.parametrize("card_in", [False, True])
def test_flow_back_on_the_first_question_ends_the_visit_as_abandoned(card_in):
    kiosk = reach(S.CHOOSE_SERVICE, card_in=card_in).send(Back())
    (record,) = kiosk.records()
    assert (record.outcome, record.step, record.card_in_at_commit) == (
        "abandoned", "choose_service", card_in)
    assert kiosk.state.screen is (S.TAKE_CARD if card_in else S.IDLE)


def test_flow_back_on_a_single_service_kiosk_leaves_from_the_service_question():
    settings = replace(SETTINGS, service_ids=("only",))
    kiosk = FlowDriver(settings).send(CardInserted(), read_ok(), CardRemoved(), Back())
    assert kiosk.records()[0].step == "choose_service" and kiosk.state.screen is S.IDLE


@pytest.mark.parametrize("services", [("only",), ("id-card", "house-reg", "passport")])
def test_flow_back_survives_a_remote_config_changing_the_services_mid_visit(services):
    kiosk = reach(S.RATING)
    kiosk.settings = replace(SETTINGS, service_ids=services)
    kiosk.send(Back(), Back())
    assert kiosk.state.screen is S.CHOOSE_SERVICE and kiosk.records() == []
    kiosk.send(Back())
    assert kiosk.records()[0].outcome == "abandoned" and kiosk.state.screen is S.IDLE


def test_flow_back_then_another_service_checks_that_service():
    kiosk = FlowDriver(repeats=("house-reg",)).send(*VISIT[:4], Back())
    assert kiosk.state.screen is S.CHOOSE_SERVICE
    kiosk.send(ServiceChosen("house-reg"))
    assert [c.service_id for c in kiosk.checks()] == ["id-card", "house-reg"]
    assert kiosk.state.screen is S.ALREADY_RATED and kiosk.records() == []


def test_flow_low_rating_asks_why_and_records_the_reason():
    kiosk = FlowDriver().send(*path_to(S.REASON), ReasonChosen("staff"), Dismissed())
    (record,) = kiosk.records()
    assert (record.rating, record.reason) == (1, "staff")


def test_flow_reason_may_be_skipped():
    kiosk = FlowDriver().send(*path_to(S.REASON), ReasonChosen(None), Dismissed())
    (record,) = kiosk.records()
    assert record.outcome == "completed" and record.reason is None


def test_flow_reason_threshold_comes_from_settings():
    kiosk = FlowDriver(replace(SETTINGS, ask_reason_at_or_below=3)).send(
        *path_to(S.RATING), RatingChosen(3))
    assert kiosk.state.screen is S.REASON


def test_flow_expired_card_rates_normally_and_is_marked_expired():
    kiosk = FlowDriver().send(CardInserted(), read_ok(expired=True), CardRemoved(),
                              ServiceChosen("id-card"), CopyAnswered("id_card"), RatingChosen(4),
                              Dismissed())
    (record,) = kiosk.records()
    assert record.outcome == "completed" and record.expired is True


def test_flow_service_chosen_asks_whether_this_card_rated_that_service():
    kiosk = FlowDriver(repeats=None).send(*path_to(S.CHOOSE_SERVICE), ServiceChosen("id-card"))
    (check,) = kiosk.checks()
    assert (check.repeat_hash, check.service_id) == (HASH, "id-card")
    assert kiosk.state.visit.is_repeat_pending
    kiosk.send(RepeatChecked(False))
    assert kiosk.state.screen is S.COPY_CHECK and not kiosk.state.visit.is_repeat_pending
    kiosk.send(RepeatChecked(True))  # nothing asked: stale, changes nothing
    assert kiosk.state.screen is S.COPY_CHECK


@pytest.mark.parametrize("card_in", [False, True])
def test_flow_repeat_for_this_service_is_told_and_records_nothing(card_in):
    kiosk = reach(S.CHOOSE_SERVICE, card_in=card_in)
    kiosk.repeats = ("id-card",)
    kiosk.send(ServiceChosen("id-card"))
    assert kiosk.state.screen is S.ALREADY_RATED and "error" in kiosk.beeps()
    kiosk.wait(TIMEOUTS[S.ALREADY_RATED] + 1)
    assert kiosk.records() == []
    assert kiosk.state.screen is (S.TAKE_CARD if card_in else S.IDLE)


def test_flow_a_second_service_within_the_window_is_rated():
    kiosk = FlowDriver(repeats=("id-card",)).send(
        CardInserted(), read_ok(), CardRemoved(), ServiceChosen("house-reg"),
        CopyAnswered("none"), RatingChosen(4), Dismissed())
    (record,) = kiosk.records()
    assert (record.outcome, record.service_id) == ("completed", "house-reg")


def test_flow_other_service_is_a_choice_and_checked_like_any():
    kiosk = FlowDriver().send(*path_to(S.CHOOSE_SERVICE), ServiceChosen(OTHER_SERVICE))
    assert kiosk.state.screen is S.COPY_CHECK
    assert [c.service_id for c in kiosk.checks()] == [OTHER_SERVICE]


def test_flow_single_service_kiosk_still_offers_other_service():
    settings = replace(SETTINGS, service_ids=("only",))
    kiosk = FlowDriver(settings).send(CardInserted(), read_ok(), CardRemoved())
    assert kiosk.state.screen is S.CHOOSE_SERVICE and kiosk.checks() == []
    kiosk.send(ServiceChosen(OTHER_SERVICE), CopyAnswered("none"), RatingChosen(5), Dismissed())
    assert [c.service_id for c in kiosk.checks()] == [OTHER_SERVICE]
    assert kiosk.records()[0].service_id == OTHER_SERVICE


def test_flow_unknown_service_or_answer_is_ignored():
    kiosk = reach(S.CHOOSE_SERVICE).send(ServiceChosen("no-such-service"))
    assert kiosk.state.screen is S.CHOOSE_SERVICE
    kiosk = reach(S.COPY_CHECK).send(CopyAnswered("passport"))
    assert kiosk.state.screen is S.COPY_CHECK
    kiosk = reach(S.RATING).send(RatingChosen(6), RatingChosen(0))
    assert kiosk.state.screen is S.RATING
    kiosk = reach(S.REASON).send(ReasonChosen("bribe"))
    assert kiosk.state.screen is S.REASON


def test_flow_rating_without_card_is_unverified_and_never_checked():
    kiosk = FlowDriver().send(StartedWithoutCard(), ServiceChosen("house-reg"),
                              CopyAnswered("both"), RatingChosen(3), Dismissed())
    (record,) = kiosk.records()
    assert record.verified is False and record.repeat_hash is None
    assert record.card_in_at_commit is None and kiosk.checks() == []
    assert kiosk.state.screen is S.THANK_YOU
    kiosk.wait(30.1)
    assert kiosk.state.screen is S.IDLE


def test_flow_rating_without_card_refused_when_not_allowed():
    kiosk = FlowDriver(replace(SETTINGS, allow_rating_without_card=False))
    kiosk.send(StartedWithoutCard())
    assert kiosk.state.screen is S.IDLE and kiosk.effects == []


def test_flow_card_inserted_asks_for_a_read():
    kiosk = FlowDriver().send(CardInserted())
    assert ReadCard() in kiosk.effects
    assert SetStatusLight("busy") in kiosk.effects


def test_flow_card_pulled_during_reading_is_a_card_problem():
    kiosk = FlowDriver().send(CardInserted(), CardRemoved())
    assert kiosk.state.screen is S.CARD_PROBLEM
    assert kiosk.state.problem == "removed"
    # The reader's late failure for the same pull changes nothing.
    kiosk.send(CardFailed("removed"), read_ok())
    assert kiosk.state.screen is S.CARD_PROBLEM and kiosk.records() == []
    kiosk.send(Dismissed())
    assert kiosk.state.screen is S.IDLE  # the card is out: insert it again


def test_flow_card_read_timeout_is_a_card_problem():
    kiosk = FlowDriver().send(CardInserted()).wait(10.1)
    assert (kiosk.state.screen, kiosk.state.problem) == (S.CARD_PROBLEM, "timeout")
    kiosk.send(read_ok())  # a read finishing after the deadline is too late
    assert kiosk.state.screen is S.CARD_PROBLEM


def test_flow_unknown_card_failure_reason_is_shown_as_unreadable():
    kiosk = FlowDriver().send(CardInserted(), CardFailed("weird"))
    assert kiosk.state.problem == "unreadable"


def test_flow_unreadable_card_wiped_and_inserted_again_is_read_again():
    kiosk = reach(S.CARD_PROBLEM).send(CardRemoved())
    assert kiosk.state.screen is S.CARD_PROBLEM
    kiosk.send(CardInserted())
    assert kiosk.state.screen is S.READING and ReadCard() in kiosk.effects


def test_flow_card_taken_after_the_read_goes_on_to_the_questions():
    kiosk = FlowDriver().send(CardInserted(), read_ok())
    assert kiosk.state.screen is S.RETURN_CARD and "card" in kiosk.beeps()
    kiosk.send(CardRemoved())
    assert kiosk.state.screen is S.CHOOSE_SERVICE and not kiosk.state.card_present
    kiosk.send(*VISIT[3:], Dismissed())
    assert kiosk.records()[0].card_in_at_commit is False
    kiosk.wait(30.1)
    assert kiosk.state.screen is S.IDLE  # no card left: no reminder
    assert "reminder" not in kiosk.beeps()


def test_flow_card_left_in_is_asked_for_on_every_screen_and_recorded():
    kiosk = FlowDriver().send(CardInserted(), read_ok())
    kiosk.wait(TIMEOUTS[S.RETURN_CARD] - 0.1)
    assert kiosk.state.screen is S.RETURN_CARD
    kiosk.wait(0.2)  # the questions go on, the card still in
    assert kiosk.state.screen is S.CHOOSE_SERVICE and kiosk.beeps().count("reminder") == 1
    for _ in range(3):
        kiosk.wait(5.1)  # a reminder every reminder_s, on the questions too
    assert kiosk.beeps().count("reminder") == 4
    kiosk.send(*VISIT[3:]).wait(TIMEOUTS[S.CONFIRM] + 0.1)
    (record,) = kiosk.records()
    assert (record.outcome, record.card_in_at_commit) == ("completed", True)
    kiosk.send(Dismissed())
    assert kiosk.state.screen is S.TAKE_CARD
    kiosk.wait(10_000)
    assert kiosk.state.screen is S.TAKE_CARD, "gave up asking with the card still in"
    kiosk.send(CardRemoved())
    assert kiosk.state.screen is S.IDLE


def test_flow_card_put_back_mid_visit_is_reminded_of():
    kiosk = reach(S.RATING).send(CardInserted())
    assert kiosk.state.screen is S.RATING
    kiosk.wait(5.1)
    assert kiosk.beeps() == ["reminder"]


def test_flow_rating_without_card_with_a_bad_card_still_in_is_reminded_of():
    kiosk = reach(S.CARD_PROBLEM).send(StartedWithoutCard())
    assert kiosk.state.screen is S.CHOOSE_SERVICE and kiosk.state.card_present
    kiosk.wait(5.1)
    assert "reminder" in kiosk.beeps()


def test_flow_card_inserted_after_a_committed_visit_is_read():
    kiosk = FlowDriver().send(StartedWithoutCard(), ServiceChosen("house-reg"),
                              CopyAnswered("both"), RatingChosen(3), Dismissed())
    assert kiosk.state.screen is S.THANK_YOU
    kiosk.send(CardInserted())
    assert kiosk.state.screen is S.READING and ReadCard() in kiosk.effects
    assert len(kiosk.records()) == 1


def test_flow_forgotten_card_shows_a_fault_and_asks_a_passer_by():
    kiosk = reach(S.TAKE_CARD)
    assert not kiosk.state.card_forgotten
    kiosk.wait(120.1)
    assert kiosk.state.screen is S.TAKE_CARD and kiosk.state.card_forgotten
    assert SetStatusLight("fault") in kiosk.effects
    assert ShowScreen(S.TAKE_CARD) in kiosk.effects  # drawn and spoken again, reworded
    kiosk.effects.clear()
    kiosk.send(CardRemoved())
    assert kiosk.state.screen is S.IDLE and not kiosk.state.card_forgotten
    assert SetStatusLight("ready") in kiosk.effects


def test_flow_card_taken_mid_visit_stops_the_reminders():
    kiosk = reach(S.RATING, card_in=True).send(CardRemoved())
    kiosk.wait(5.1).wait(5.1)
    assert "reminder" not in kiosk.beeps() and kiosk.state.next_reminder is None


def test_flow_card_still_in_reader_never_starts_a_new_visit():
    kiosk = reach(S.THANK_YOU, card_in=True).wait(30.1)
    assert kiosk.state.screen is S.TAKE_CARD
    kiosk.send(CardInserted())
    assert kiosk.state.screen is S.TAKE_CARD
    kiosk.send(CardRemoved(), CardInserted())
    assert kiosk.state.screen is S.READING


def test_flow_language_toggle_lasts_for_the_visit_and_resets_after():
    kiosk = FlowDriver().send(LanguageToggled(), *VISIT, Dismissed())
    assert kiosk.records()[0].language == "en"
    kiosk.wait(30.1)
    assert kiosk.state.screen is S.IDLE and kiosk.state.language == "th"


def test_flow_a_tap_restarts_the_screen_clock():
    kiosk = reach(S.RATING)
    kiosk.wait(30)
    kiosk.send(LanguageToggled())
    kiosk.wait(30)
    assert kiosk.state.screen is S.RATING


def test_flow_suspension_mid_visit_records_the_visit_as_abandoned():
    kiosk = reach(S.COPY_CHECK, card_in=True).send(ServiceSuspended("disk below floor"))
    (record,) = kiosk.records()
    assert (record.outcome, record.step) == ("abandoned", "copy_check")
    assert kiosk.state.out_of_service == "disk below floor"
    assert SetStatusLight("fault") in kiosk.effects
    kiosk.send(CardRemoved(), CardInserted())
    assert kiosk.state.screen is S.OUT_OF_SERVICE
    kiosk.send(ServiceResumed())
    assert kiosk.state.screen is S.TAKE_CARD and kiosk.state.card_present


def test_flow_suspension_on_the_confirm_screen_records_the_visit_completed():
    kiosk = reach(S.CONFIRM).send(ServiceSuspended("disk below floor"))
    (record,) = kiosk.records()
    assert (record.outcome, record.step, record.rating) == ("completed", "confirm", 5)
    assert kiosk.state.screen is S.OUT_OF_SERVICE


def test_flow_suspension_while_the_card_is_handed_back_records_it_abandoned_there():
    kiosk = reach(S.RETURN_CARD).send(ServiceSuspended("fault"))
    (record,) = kiosk.records()
    assert (record.outcome, record.step, record.verified) == ("abandoned", "return_card", True)
    assert record.rating is None and record.card_in_at_commit is True


def test_flow_after_a_fault_the_kiosk_restarts_without_asking_for_a_card_it_holds():
    assert flow.after_fault(card_present=True).screen is S.TAKE_CARD
    assert flow.after_fault(card_present=False) == State()


def test_flow_rate_only_kiosk_goes_from_card_to_rating_and_never_asks_why():
    kiosk = FlowDriver(replace(SETTINGS, rate_only=True)).send(CardInserted(), read_ok())
    assert kiosk.state.screen is S.RATING
    assert [(c.repeat_hash, c.service_id) for c in kiosk.checks()] == [(HASH, None)]
    kiosk.send(RatingChosen(1))
    (record,) = kiosk.records()
    assert (record.rating, record.service_id, record.copy_answer) == (1, None, None)
    # No screen asked for the card back: whether it was still in says nothing.
    assert record.card_in_at_commit is None
    assert kiosk.state.screen is S.THANK_YOU


def test_flow_duration_is_measured_from_insertion():
    kiosk = FlowDriver().send(CardInserted(), read_ok(), CardRemoved())
    kiosk.now += 12.5
    kiosk.send(ServiceChosen("id-card"), CopyAnswered("none"), RatingChosen(5), Dismissed())
    assert kiosk.records()[0].duration_s == 12.5


def test_flow_card_read_repr_hides_the_hash():
    for shown in (repr(read_ok()), repr(CheckRepeat(HASH, "id-card")),
                  repr(reach(S.RATING).state),
                  repr(FlowDriver().send(*VISIT, Dismissed()).records()[0])):
        assert HASH.hex() not in shown and repr(HASH) not in shown


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(list(EVENTS.values())),
                          st.floats(0.5, 200.0)), max_size=40))
def test_flow_never_asks_for_a_card_while_one_is_in(moves):
    """Whatever happens in whatever order, idle (insert your card) is never shown with a card
    in; and once the card is out, time alone brings the kiosk back to idle."""
    kiosk = FlowDriver(repeats=("house-reg",))
    for move in moves:
        if isinstance(move, float):
            kiosk.wait(move)
        else:
            kiosk.send(move)
        assert not (kiosk.state.card_present and kiosk.state.screen is S.IDLE)
    kiosk.send(CardRemoved(), ServiceResumed())
    for _ in range(10):
        kiosk.wait(200)
    assert kiosk.state.screen is S.IDLE


def test_flow_the_table_covers_every_event_type():
    assert {type(event) for event in EVENTS.values()} == set(flow.EVENT_TYPES)


# --- settings: the config schema holds the only defaults --------------------------------------


def _schema_defaults():
    """``{(section, key): default}`` of every key the config schema gives a default."""
    defaults = {}
    for name, section in config.SECTIONS.items():
        for f in dataclasses.fields(section):
            default = f.metadata["default"]
            if default is not config._REQUIRED:
                defaults[name, f.name] = list(default) if isinstance(default, tuple) else default
    return defaults


def test_flow_settings_take_every_value_from_the_config(make_config):
    with pytest.raises(TypeError):
        FlowSettings(timeouts=TIMEOUTS, service_ids=("id-card",))  # no defaults of its own
    cfg = make_config()
    settings = FlowSettings.from_config(cfg)
    assert settings.take_card_s == cfg.flow.take_card_s == 20.0  # the config's value runs
    assert settings.thank_you_s == cfg.flow.thank_you_s == 30.0
    assert settings.timeouts[S.RATING] == cfg.flow.timeout_rating_s
    assert settings.timeouts[S.RETURN_CARD] == cfg.flow.return_card_s
    assert settings.timeouts[S.CONFIRM] == cfg.flow.confirm_s
    assert settings.service_ids == tuple(s.id for s in cfg.services)


def test_flow_defaults_toml_and_the_example_agree_with_the_config_schema(example_config_path):
    packaged = tomllib.loads(config.DEFAULTS_PATH.read_text(encoding="utf-8"))
    example = tomllib.loads(example_config_path.read_text(encoding="utf-8"))
    for (section, key), default in _schema_defaults().items():
        assert packaged[section].get(key) == default, f"defaults.toml {section}.{key}"
        if default not in (None, []):  # unset by default: the example shows one wiring
            assert example[section][key] == default, f"kiosk.example.toml {section}.{key}"
