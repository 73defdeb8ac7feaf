"""The PC/SC adapter through the real stack: pcscd + vpcd + the emulated card.

Every test starts with pcscd running, no card and no faults (the ``card_stack`` fixture).
"""

import datetime
import queue
import threading
import time

import pytest

from kiosk.card import reader as pcsc
from kiosk.card import thai_id
from kiosk.card.repeat import RepeatKeys
from kiosk.errors import CardPulledDuringRead, InvalidCitizenId, NotThaiIdCard, ReaderUnavailable
from kiosk.flow import CardFailed, CardInserted, CardRemoved
from kiosk.rigs.card_profiles import PROFILES

WAIT_S = 10.0


class Events:
    """The kiosk's queue as the service sees it: ``put``, a history, and waits that take events."""

    def __init__(self):
        self.history = []
        self._taken = set()
        self._changed = threading.Condition()

    def put(self, event):
        with self._changed:
            self.history.append(event)
            self._changed.notify_all()

    def forget(self):
        """Mark every event so far as taken: later waits see only what happens next."""
        with self._changed:
            self._taken.update(range(len(self.history)))

    def next(self, timeout=WAIT_S):
        return self.next_of(object, timeout=timeout)

    def next_of(self, *kinds, timeout=WAIT_S):
        """Take the oldest untaken event of one of ``kinds``; others stay for later waits."""

        def find():
            return next(
                (
                    i
                    for i, e in enumerate(self.history)
                    if i not in self._taken and isinstance(e, kinds)
                ),
                None,
            )

        with self._changed:
            if not self._changed.wait_for(lambda: find() is not None, timeout):
                raise queue.Empty(f"no {kinds} within {timeout} s; history: {self.history}")
            index = find()
            self._taken.add(index)
            return self.history[index]


@pytest.fixture
def service(card_stack):
    events = Events()
    svc = pcsc.CardService(
        events.put, RepeatKeys(600), read_deadline_s=2.0, settle_s=0.05, poll_s=0.2
    )
    svc.events = events
    svc.start()
    yield svc
    svc.stop()
    card_stack.emulator.remove()  # ends a stuck worker before the next test
    assert svc.wait_for_idle(WAIT_S)


def read_one(service):
    service.request_read()
    return service.events.next_of(thai_id.CardSummary, CardFailed)


def test_reader_lists_the_virtual_reader(card_stack):
    assert any(name.startswith("Virtual PCD") for name in pcsc.list_readers())


@pytest.mark.parametrize(
    "profile", ["default", "old_3b67", "nid17", "odd_dates", "lifelong", "expired"]
)
def test_reader_reads_every_thai_profile(inserted, profile):
    inserted(profile)
    with pcsc.connect() as card:
        assert card.atr == PROFILES[profile].atr
        result = thai_id.read_summary(
            card.transmit, card.atr, RepeatKeys(600), today=datetime.date.today()
        )
    assert result.expired is (profile == "expired")


@pytest.mark.parametrize(
    "profile, error", [("bad_check_digit", InvalidCitizenId), ("not_thai", NotThaiIdCard)]
)
def test_reader_odd_cards_fail_with_their_typed_error(inserted, profile, error):
    inserted(profile)
    with pytest.raises(error), pcsc.connect() as card:
        thai_id.read_summary(card.transmit, card.atr, RepeatKeys(600), today=datetime.date.today())


def test_reader_no_card_is_card_pulled_during_read(card_stack):
    with pytest.raises(CardPulledDuringRead, match="Virtual PCD"), pcsc.connect():
        pass


def test_reader_unknown_reader_name_is_reader_unavailable(inserted):
    inserted()
    with (
        pytest.raises(ReaderUnavailable, match="no reader matching 'Nonexistent'"),
        pcsc.connect("Nonexistent"),
    ):
        pass


def test_reader_monitor_reports_insert_and_remove(card_stack, service):
    assert pcsc_state(service, "no_card")
    card_stack.emulator.insert("default")
    assert isinstance(service.events.next(), CardInserted)
    assert service.reader_state == "ok"
    card_stack.emulator.remove()
    assert isinstance(service.events.next(), CardRemoved)
    assert pcsc_state(service, "no_card")


def pcsc_state(service, state, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while service.reader_state != state:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_reader_service_read_puts_a_summary_without_citizen_data(inserted, service):
    inserted("expired")
    assert isinstance(service.events.next(), CardInserted)
    assert service.last_read_at is None
    result = read_one(service)
    assert isinstance(result, thai_id.CardSummary)
    assert result.expired and result.read_ms > 0 and len(result.repeat_hash) == 32
    assert service.last_read_at is not None
    assert PROFILES["expired"].cid not in repr(result)


def test_reader_service_collects_band_and_gender_only_when_enabled(inserted, card_stack):
    events = Events()
    svc = pcsc.CardService(events.put, RepeatKeys(600), collect_age_band=True, collect_gender=True)
    inserted("nid17")
    svc.request_read()
    result = events.next_of(thai_id.CardSummary, CardFailed)
    assert result.gender == "female" and result.age_band.endswith("9")
    assert svc.wait_for_idle(WAIT_S)


@pytest.mark.parametrize(
    "profile, reason", [("not_thai", "not_thai_id"), ("bad_check_digit", "unreadable")]
)
def test_reader_service_failures_carry_the_flow_reason(inserted, service, profile, reason):
    inserted(profile)
    assert read_one(service) == CardFailed(reason)


def test_reader_service_without_card_says_removed(card_stack, service):
    assert read_one(service) == CardFailed("removed")


def test_reader_card_pulled_mid_read_says_removed(inserted, service, card_stack):
    inserted()
    service.events.next_of(CardInserted)
    # The card answers SELECT and the CID's READ and GET RESPONSE, then leaves.
    card_stack.emulator.set_fault(pull_after=3)
    assert read_one(service) == CardFailed("removed")
    assert isinstance(service.events.next_of(CardRemoved), CardRemoved)


def test_reader_garbage_answer_is_unreadable_after_one_retry(inserted, service, card_stack):
    inserted()
    card_stack.emulator.set_fault(garbage=True)
    assert read_one(service) == CardFailed("unreadable")
    # SELECT answered twice: the first attempt and the retry after the settle delay.
    assert card_stack.emulator.status()["apdu_count"] == 2


def test_reader_frozen_card_releases_the_kiosk_at_the_deadline(inserted, service, card_stack):
    inserted()
    service.events.next_of(CardInserted)
    card_stack.emulator.set_fault(frozen=True)
    assert read_one(service) == CardFailed("timeout")
    assert service.is_reading  # the worker is still stuck in SCardTransmit
    # A new request does not queue behind the stuck worker: it fails at once.
    service.request_read()
    assert service.events.next_of(CardFailed, thai_id.CardSummary, timeout=1.0) == CardFailed(
        "timeout"
    )
    card_stack.emulator.remove()
    assert service.wait_for_idle(WAIT_S)
    card_stack.emulator.clear_faults()
    card_stack.emulator.insert("default")
    service.events.next_of(CardInserted)
    assert isinstance(read_one(service), thai_id.CardSummary)


def test_reader_second_request_joins_a_running_read(inserted, service, card_stack):
    inserted()
    card_stack.emulator.set_fault(delay_s=0.05)
    service.request_read()
    service.request_read()
    assert isinstance(service.events.next_of(thai_id.CardSummary, CardFailed), thai_id.CardSummary)
    assert service.wait_for_idle(WAIT_S)
    with pytest.raises(queue.Empty):
        service.events.next_of(thai_id.CardSummary, CardFailed, timeout=0.3)
