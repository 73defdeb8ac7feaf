"""The card monitor heals by itself when pcscd dies, restarts, or starts after the kiosk.

Real USB hot-plug of a reader cannot be emulated: vpcd's reader is defined in reader.conf and
pcscd ignores hot-plug requests for it, so the reader list only changes when pcscd restarts.
These tests cover the same code path (the context goes bad, the reader vanishes and comes back)
through pcscd restarts on the session's stack.
"""

import time

import pytest

from kiosk.card import reader as pcsc
from kiosk.card import thai_id
from kiosk.card.repeat import RepeatKeys
from kiosk.flow import CardFailed, CardInserted, CardRemoved
from tests.card.test_reader import Events

WAIT_S = 15.0


def wait_for_state(service, state, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while service.reader_state != state:
        assert time.monotonic() < deadline, (
            f"reader state stayed {service.reader_state!r}, wanted {state!r}"
        )
        time.sleep(0.02)


@pytest.fixture
def service(card_stack):
    events = Events()
    svc = pcsc.CardService(
        events.put, RepeatKeys(600), read_deadline_s=2.0, settle_s=0.05, poll_s=0.2
    )
    svc.events = events
    yield svc
    svc.stop()
    card_stack.start_pcscd()
    card_stack.emulator.remove()
    assert svc.wait_for_idle(WAIT_S)


def read_one(service):
    service.request_read()
    return service.events.next_of(thai_id.CardSummary, CardFailed)


def swap_card_and_read(card_stack, service):
    service.events.forget()
    card_stack.emulator.remove()
    service.events.next_of(CardRemoved, timeout=WAIT_S)
    card_stack.emulator.insert("nid17")
    service.events.next_of(CardInserted, timeout=WAIT_S)
    return read_one(service)


def test_recovery_after_pcscd_is_killed_and_restarted(card_stack, service):
    card_stack.emulator.insert("default")
    service.start()
    service.events.next_of(CardInserted)
    card_stack.kill_pcscd()
    wait_for_state(service, "no_service")
    assert read_one(service) == CardFailed("no_reader")
    card_stack.start_pcscd()
    wait_for_state(service, "ok")
    assert isinstance(swap_card_and_read(card_stack, service), thai_id.CardSummary)


def test_recovery_when_pcscd_starts_after_the_monitor(card_stack, service):
    card_stack.kill_pcscd()
    service.start()
    wait_for_state(service, "no_service")
    card_stack.start_pcscd()
    card_stack.emulator.insert("default")
    service.events.next_of(CardInserted, timeout=WAIT_S)
    assert service.reader_state == "ok"
    assert isinstance(read_one(service), thai_id.CardSummary)


def test_recovery_pcscd_restart_frees_a_stuck_read(card_stack, service):
    card_stack.emulator.insert("default")
    service.start()
    service.events.next_of(CardInserted)
    card_stack.emulator.set_fault(frozen=True)
    assert read_one(service) == CardFailed("timeout")
    assert service.is_reading
    card_stack.restart_pcscd()
    assert service.wait_for_idle(WAIT_S), "the stuck read outlived the pcscd restart"
    card_stack.emulator.clear_faults()
    wait_for_state(service, "ok")
    assert isinstance(swap_card_and_read(card_stack, service), thai_id.CardSummary)
