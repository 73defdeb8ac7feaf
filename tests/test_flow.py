"""The visit flow: every screen × every event, timeouts on a fake clock, the house rules."""

import dataclasses
import itertools
import tomllib
from dataclasses import replace

import pytest

from kiosk import config, flow
from kiosk.flow import (
    Beep,
    CardFailed,
    CardInserted,
    CardRead,
    CardRemoved,
    CopyAnswered,
    Dismissed,
    FlowSettings,
    LanguageToggled,
    RatingChosen,
    ReadCard,
    ReasonChosen,
    RecordVisit,
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

S = Screen
TIMEOUTS = {
    S.READING: 10.0, S.CARD_PROBLEM: 8.0, S.ALREADY_RATED: 8.0, S.CHOOSE_SERVICE: 30.0,
    S.COPY_CHECK: 31.0, S.RATING: 32.0, S.REASON: 33.0,
}
SETTINGS = FlowSettings(timeouts=TIMEOUTS, service_ids=("id-card", "house-reg"),
                        thank_you_s=8.0, take_card_s=120.0, reminder_s=5.0,
                        allow_rating_without_card=True, ask_reason_at_or_below=2)
HASH = b"\x01" * 32


class FlowDriver:
    """Drives the flow like the runner does and keeps the history of effects."""

    def __init__(self, settings=SETTINGS, now=1000.0):
        self.settings = settings
        self.now = now
        self.state = State()
        self.effects = []

    def send(self, *events):
        for event in events:
            self.state, effects = flow.step(self.state, event, self.now, self.settings)
            self.effects.extend(effects)
        return self

    def wait(self, seconds):
        self.now += seconds
        return self.send(Tick())

    def records(self):
        return [e.record for e in self.effects if isinstance(e, RecordVisit)]

    def beeps(self):
        return [e.kind for e in self.effects if isinstance(e, Beep)]


def read_ok(is_repeat=False, expired=False):
    return CardRead(is_repeat=is_repeat, repeat_hash=HASH, expired=expired)


# How to reach each screen from idle, as a citizen would.
PATHS = {
    S.IDLE: (),
    S.READING: (CardInserted(),),
    S.CARD_PROBLEM: (CardInserted(), CardFailed("unreadable")),
    S.ALREADY_RATED: (CardInserted(), read_ok(is_repeat=True)),
    S.CHOOSE_SERVICE: (CardInserted(), read_ok()),
    S.COPY_CHECK: (CardInserted(), read_ok(), ServiceChosen("id-card")),
    S.RATING: (CardInserted(), read_ok(), ServiceChosen("id-card"), CopyAnswered("none")),
    S.REASON: (CardInserted(), read_ok(), ServiceChosen("id-card"), CopyAnswered("none"),
               RatingChosen(1)),
    S.THANK_YOU: (CardInserted(), read_ok(), ServiceChosen("id-card"), CopyAnswered("none"),
                  RatingChosen(5)),
    S.TAKE_CARD: (CardInserted(), read_ok(), ServiceChosen("id-card"), CopyAnswered("none"),
                  RatingChosen(5), Dismissed()),
    S.OUT_OF_SERVICE: (ServiceSuspended("disk below floor"),),
}

EVENTS = {
    "CardInserted": CardInserted(),
    "CardRead": read_ok(),
    "CardReadRepeat": read_ok(is_repeat=True),
    "CardFailed": CardFailed("not_thai_id"),
    "CardRemoved": CardRemoved(),
    "LanguageToggled": LanguageToggled(),
    "StartedWithoutCard": StartedWithoutCard(),
    "ServiceChosen": ServiceChosen("house-reg"),
    "CopyAnswered": CopyAnswered("both"),
    "RatingChosen": RatingChosen(4),
    "RatingChosenLow": RatingChosen(2),
    "ReasonChosen": ReasonChosen("staff"),
    "Dismissed": Dismissed(),
    "Tick": Tick(),
    "ServiceSuspended": ServiceSuspended("fault"),
    "ServiceResumed": ServiceResumed(),
}

# The transition table: (screen, event) -> screen. Every pair not listed leaves the screen as it
# is. The card is in the reader on every screen reached by inserting it.
TABLE = {
    (S.IDLE, "CardInserted"): S.READING,
    (S.IDLE, "StartedWithoutCard"): S.CHOOSE_SERVICE,
    (S.READING, "CardRead"): S.CHOOSE_SERVICE,
    (S.READING, "CardReadRepeat"): S.ALREADY_RATED,
    (S.READING, "CardFailed"): S.CARD_PROBLEM,
    (S.READING, "CardRemoved"): S.CARD_PROBLEM,
    (S.CARD_PROBLEM, "Dismissed"): S.IDLE,
    (S.CARD_PROBLEM, "StartedWithoutCard"): S.CHOOSE_SERVICE,
    (S.ALREADY_RATED, "Dismissed"): S.IDLE,
    (S.CHOOSE_SERVICE, "ServiceChosen"): S.COPY_CHECK,
    (S.COPY_CHECK, "CopyAnswered"): S.RATING,
    (S.RATING, "RatingChosen"): S.THANK_YOU,
    (S.RATING, "RatingChosenLow"): S.REASON,
    (S.REASON, "ReasonChosen"): S.THANK_YOU,
    (S.THANK_YOU, "Dismissed"): S.TAKE_CARD,
    (S.TAKE_CARD, "CardRemoved"): S.IDLE,
    (S.OUT_OF_SERVICE, "ServiceResumed"): S.IDLE,
}
for screen in S:
    TABLE[(screen, "ServiceSuspended")] = S.OUT_OF_SERVICE


def reach(screen, settings=SETTINGS):
    kiosk = FlowDriver(settings).send(*PATHS[screen])
    assert kiosk.state.screen is screen
    kiosk.effects.clear()
    return kiosk


@pytest.mark.parametrize(("screen", "event_name"), list(itertools.product(S, EVENTS)))
def test_flow_every_screen_and_event_follows_the_table(screen, event_name):
    kiosk = reach(screen)
    before = kiosk.state
    kiosk.send(EVENTS[event_name])
    expected = TABLE.get((screen, event_name), screen)
    assert kiosk.state.screen is expected
    if expected is not screen:
        assert ShowScreen(expected) in kiosk.effects
        assert SetStatusLight(flow.status_light(expected)) in kiosk.effects
    elif event_name not in ("LanguageToggled", "CardInserted", "CardRemoved", "Tick",
                            "ServiceSuspended"):
        # An event that means nothing here changes nothing and does nothing.
        assert kiosk.state == before
        assert kiosk.effects == []


@pytest.mark.parametrize("screen", [s for s in S if s is not S.IDLE and s is not S.OUT_OF_SERVICE])
def test_flow_every_timed_screen_times_out_and_never_hangs(screen):
    kiosk = reach(screen)
    kiosk.wait(kiosk.state.deadline - kiosk.now - 0.01)
    assert kiosk.state.screen is screen, "left the screen before its deadline"
    kiosk.wait(0.02)
    assert kiosk.state.screen is not screen
    # Whatever follows, idle is reached within a bounded time even with the card left in.
    for _ in range(100):
        if kiosk.state.screen is S.IDLE:
            break
        kiosk.wait(60)
    assert kiosk.state.screen is S.IDLE


@pytest.mark.parametrize("screen", flow.QUESTION_SCREENS)
def test_flow_timeout_on_a_question_records_an_abandoned_visit_with_its_step(screen):
    kiosk = reach(screen)
    kiosk.wait(TIMEOUTS[screen] + 0.1)
    (record,) = kiosk.records()
    assert record.outcome == "abandoned"
    assert record.step == screen.value
    assert record.verified is True
    # The card is still in: the kiosk reminds instead of going idle.
    assert kiosk.state.screen is S.TAKE_CARD


def test_flow_idle_and_out_of_service_have_no_deadline():
    assert reach(S.IDLE).state.deadline is None
    kiosk = reach(S.OUT_OF_SERVICE).wait(10_000)
    assert kiosk.state.screen is S.OUT_OF_SERVICE


def test_flow_complete_visit_records_before_thanking():
    kiosk = FlowDriver().send(*PATHS[S.THANK_YOU])
    (record,) = kiosk.records()
    assert (record.outcome, record.service_id, record.copy_answer, record.rating) == (
        "completed", "id-card", "none", 5)
    assert record.verified and record.repeat_hash == HASH and record.reason is None
    assert kiosk.effects.index(RecordVisit(record)) < kiosk.effects.index(ShowScreen(S.THANK_YOU))


def test_flow_low_rating_asks_why_and_records_the_reason():
    kiosk = FlowDriver().send(*PATHS[S.REASON], ReasonChosen("copies_requested"))
    (record,) = kiosk.records()
    assert (record.rating, record.reason) == (1, "copies_requested")


def test_flow_reason_may_be_skipped():
    kiosk = FlowDriver().send(*PATHS[S.REASON], ReasonChosen(None))
    (record,) = kiosk.records()
    assert record.outcome == "completed" and record.reason is None


def test_flow_reason_threshold_comes_from_settings():
    kiosk = FlowDriver(replace(SETTINGS, ask_reason_at_or_below=3)).send(*PATHS[S.RATING],
                                                                    RatingChosen(3))
    assert kiosk.state.screen is S.REASON


def test_flow_expired_card_rates_normally_and_is_marked_expired():
    kiosk = FlowDriver().send(CardInserted(), read_ok(expired=True), ServiceChosen("id-card"),
                         CopyAnswered("id_card"), RatingChosen(4))
    (record,) = kiosk.records()
    assert record.outcome == "completed" and record.expired is True


def test_flow_repeat_card_records_nothing():
    kiosk = FlowDriver().send(CardInserted(), read_ok(is_repeat=True))
    kiosk.wait(60)
    assert kiosk.records() == []
    assert kiosk.state.screen is S.IDLE


def test_flow_single_service_skips_the_service_question():
    settings = replace(SETTINGS, service_ids=("only",))
    kiosk = FlowDriver(settings).send(CardInserted(), read_ok())
    assert kiosk.state.screen is S.COPY_CHECK
    kiosk.send(CopyAnswered("none"), RatingChosen(5))
    assert kiosk.records()[0].service_id == "only"


def test_flow_unknown_service_or_answer_is_ignored():
    kiosk = reach(S.CHOOSE_SERVICE).send(ServiceChosen("no-such-service"))
    assert kiosk.state.screen is S.CHOOSE_SERVICE
    kiosk = reach(S.COPY_CHECK).send(CopyAnswered("passport"))
    assert kiosk.state.screen is S.COPY_CHECK
    kiosk = reach(S.RATING).send(RatingChosen(6), RatingChosen(0))
    assert kiosk.state.screen is S.RATING
    kiosk = reach(S.REASON).send(ReasonChosen("bribe"))
    assert kiosk.state.screen is S.REASON


def test_flow_rating_without_card_is_unverified():
    kiosk = FlowDriver().send(StartedWithoutCard(), ServiceChosen("house-reg"),
                              CopyAnswered("both"), RatingChosen(3))
    (record,) = kiosk.records()
    assert record.verified is False and record.repeat_hash is None
    assert kiosk.state.screen is S.THANK_YOU
    kiosk.wait(8.1)
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


def test_flow_card_read_timeout_is_a_card_problem():
    kiosk = FlowDriver().send(CardInserted()).wait(10.1)
    assert (kiosk.state.screen, kiosk.state.problem) == (S.CARD_PROBLEM, "timeout")
    kiosk.send(read_ok())  # a read finishing after the deadline is too late
    assert kiosk.state.screen is S.CARD_PROBLEM


def test_flow_unknown_card_failure_reason_is_shown_as_unreadable():
    kiosk = FlowDriver().send(CardInserted(), CardFailed("weird"))
    assert kiosk.state.problem == "unreadable"


def test_flow_card_may_be_pulled_once_read():
    kiosk = FlowDriver().send(CardInserted(), read_ok(), CardRemoved(), ServiceChosen("id-card"),
                         CopyAnswered("none"), RatingChosen(5))
    assert kiosk.records()[0].outcome == "completed"
    kiosk.wait(8.1)
    assert kiosk.state.screen is S.IDLE  # no card left: no reminder


def test_flow_card_left_after_thank_you_is_reminded_with_beeps_until_taken():
    kiosk = FlowDriver().send(*PATHS[S.THANK_YOU]).wait(8.1)
    assert kiosk.state.screen is S.TAKE_CARD
    for _ in range(3):
        kiosk.wait(5.1)
    assert kiosk.beeps().count("reminder") >= 4
    kiosk.send(CardRemoved())
    assert kiosk.state.screen is S.IDLE


def test_flow_card_still_in_reader_never_starts_a_new_visit():
    kiosk = FlowDriver().send(*PATHS[S.THANK_YOU]).wait(8.1).wait(121)
    assert kiosk.state.screen is S.IDLE and kiosk.state.card_present
    kiosk.send(CardInserted())
    assert kiosk.state.screen is S.IDLE
    kiosk.send(CardRemoved(), CardInserted())
    assert kiosk.state.screen is S.READING


def test_flow_language_toggle_lasts_for_the_visit_and_resets_after():
    kiosk = FlowDriver().send(LanguageToggled(), CardInserted(), read_ok())
    assert kiosk.state.language == "en"
    kiosk.send(ServiceChosen("id-card"), CopyAnswered("none"), RatingChosen(5))
    assert kiosk.records()[0].language == "en"
    kiosk.send(CardRemoved()).wait(8.1)
    assert kiosk.state.language == "th"


def test_flow_a_tap_restarts_the_screen_clock():
    kiosk = reach(S.RATING)
    kiosk.wait(30)
    kiosk.send(LanguageToggled())
    kiosk.wait(30)
    assert kiosk.state.screen is S.RATING


def test_flow_suspension_mid_visit_records_the_visit_as_abandoned():
    kiosk = reach(S.COPY_CHECK).send(ServiceSuspended("disk below floor"))
    (record,) = kiosk.records()
    assert (record.outcome, record.step) == ("abandoned", "copy_check")
    assert kiosk.state.out_of_service == "disk below floor"
    assert SetStatusLight("fault") in kiosk.effects
    kiosk.send(CardRemoved(), CardInserted())
    assert kiosk.state.screen is S.OUT_OF_SERVICE
    kiosk.send(ServiceResumed())
    assert kiosk.state.screen is S.IDLE and kiosk.state.card_present


def test_flow_rate_only_kiosk_goes_from_card_to_rating_and_never_asks_why():
    kiosk = FlowDriver(replace(SETTINGS, rate_only=True)).send(CardInserted(), read_ok())
    assert kiosk.state.screen is S.RATING
    kiosk.send(RatingChosen(1))
    (record,) = kiosk.records()
    assert (record.rating, record.service_id, record.copy_answer) == (1, None, None)
    assert kiosk.state.screen is S.THANK_YOU


def test_flow_duration_is_measured_from_insertion():
    kiosk = FlowDriver().send(CardInserted(), read_ok())
    kiosk.now += 12.5
    kiosk.send(ServiceChosen("id-card"), CopyAnswered("none"), RatingChosen(5))
    assert kiosk.records()[0].duration_s == 12.5


def test_flow_card_read_repr_hides_the_hash():
    assert HASH.hex() not in repr(read_ok()) and repr(HASH) not in repr(read_ok())
    assert repr(HASH) not in repr(FlowDriver().send(*PATHS[S.THANK_YOU]).records()[0])


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
    assert settings.timeouts[S.RATING] == cfg.flow.timeout_rating_s
    assert settings.service_ids == tuple(s.id for s in cfg.services)


def test_flow_defaults_toml_and_the_example_agree_with_the_config_schema(example_config_path):
    packaged = tomllib.loads(config.DEFAULTS_PATH.read_text(encoding="utf-8"))
    example = tomllib.loads(example_config_path.read_text(encoding="utf-8"))
    for (section, key), default in _schema_defaults().items():
        assert packaged[section].get(key) == default, f"defaults.toml {section}.{key}"
        if default not in (None, []):  # unset by default: the example shows one wiring
            assert example[section][key] == default, f"kiosk.example.toml {section}.{key}"
