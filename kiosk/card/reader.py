"""The PC/SC adapter: a supervised card monitor and deadline-bound reads (pyscard lives only here).

:class:`CardService` is what the runner uses. Its monitor thread polls pcscd with
``SCardGetStatusChange`` and a timeout, instead of pyscard's ``CardMonitor`` (whose thread dies
silently when pcscd restarts): when the service goes away it drops the context and keeps
re-establishing it, so the kiosk heals by itself after a pcscd restart or when pcscd starts
after the kiosk. Its threads only ``put`` events; they never touch the display or the store.

Reads follow what real readers need: SHARED mode inside a transaction (two connections would
interleave APDUs), SELECT after every connect (pcscd powers an idle card off), disconnect with
``SCARD_LEAVE_CARD`` (powering off makes the next connection see "card was reset"), and one retry
after a short settle delay (cheap readers fail right after insertion). ``SCardTransmit`` cannot
be cancelled, so each read runs in a worker the kiosk stops waiting for at a deadline; a stuck
worker ends when the card is pulled or pcscd restarts, and no new read starts behind it.
"""

import dataclasses
import datetime
import logging
import threading
import time
from contextlib import contextmanager

from smartcard import scard

from kiosk.card import thai_id
from kiosk.errors import (
    CardError,
    CardPulledDuringRead,
    InvalidCitizenId,
    NotThaiIdCard,
    ReaderUnavailable,
)
from kiosk.flow import CardFailed, CardInserted, CardRemoved

log = logging.getLogger(__name__)

_NO_SERVICE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_E_INVALID_HANDLE,
    scard.SCARD_F_COMM_ERROR,
}
_NO_READER = {
    scard.SCARD_E_NO_READERS_AVAILABLE,
    scard.SCARD_E_UNKNOWN_READER,
    scard.SCARD_E_READER_UNAVAILABLE,
}
_NO_CARD = {scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_REMOVED_CARD}

#: ``reader_state`` values, for health reports.
READER_STATES = ("stopped", "no_service", "no_reader", "no_card", "ok")


def _hr(hresult):
    return hresult & 0xFFFFFFFF


def _check(hresult, step, reader=None):
    """Turn a PC/SC result code into the matching typed error, naming the step and reader."""
    hresult = _hr(hresult)
    if hresult == scard.SCARD_S_SUCCESS:
        return
    where = f"{step} on reader {reader!r}" if reader else step
    message = f"{where}: {scard.SCardGetErrorMessage(hresult)} (0x{hresult:08X})"
    if hresult in _NO_SERVICE or hresult in _NO_READER:
        raise ReaderUnavailable(message)
    if hresult in _NO_CARD:
        raise CardPulledDuringRead(message)
    raise CardError(message)


def list_readers():
    """Reader names pcscd knows; raises ReaderUnavailable when there is no PC/SC service."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(hresult, "connect to the PC/SC service (is pcscd running?)")
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if _hr(hresult) == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check(hresult, "list readers")
        return list(readers)
    finally:
        scard.SCardReleaseContext(context)


def choose_reader(readers, wanted=None):
    """The reader whose name contains ``wanted`` (the first reader when None), or None."""
    for name in readers:
        if wanted is None or wanted in name:
            return name
    return None


class Connection:
    """One card session: ``atr`` and ``transmit(apdu: bytes) -> bytes`` (data + status word)."""

    def __init__(self, card, protocol, reader, atr):
        self._card, self._protocol = card, protocol
        self.reader, self.atr = reader, atr

    def transmit(self, command):
        hresult, response = scard.SCardTransmit(self._card, self._protocol, list(command))
        _check(hresult, "transmit", self.reader)
        return bytes(response)


@contextmanager
def connect(wanted=None):
    """Connect to the card in the chosen reader, SHARED, inside a transaction.

    Each session has its own PC/SC context, so a session in a worker thread never shares one
    with the monitor, and a session after a pcscd restart starts clean.
    """
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check(hresult, "connect to the PC/SC service (is pcscd running?)")
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        if _hr(hresult) != scard.SCARD_E_NO_READERS_AVAILABLE:
            _check(hresult, "list readers")
        reader = choose_reader(readers or [], wanted)
        if reader is None:
            raise ReaderUnavailable(
                f"no reader matching {wanted!r}; readers: {readers or 'none'}"
                if wanted
                else "no card reader connected"
            )
        hresult, card, protocol = scard.SCardConnect(
            context,
            reader,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        _check(hresult, "connect to the card", reader)
        try:
            hresult, _name, _state, _protocol, atr = scard.SCardStatus(card)
            _check(hresult, "read the card status", reader)
            _check(scard.SCardBeginTransaction(card), "begin transaction", reader)
            try:
                yield Connection(card, protocol, reader, bytes(atr))
            finally:
                scard.SCardEndTransaction(card, scard.SCARD_LEAVE_CARD)
        finally:
            scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
    finally:
        scard.SCardReleaseContext(context)


def card_stays_present(wanted=None, poll_s=0.6):
    """Whether the card is still in the reader after pcscd's next presence poll (~400 ms)."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if _hr(hresult) != scard.SCARD_S_SUCCESS:
        return False
    try:
        hresult, readers = scard.SCardListReaders(context, [])
        reader = (
            choose_reader(readers or [], wanted) if _hr(hresult) == scard.SCARD_S_SUCCESS else None
        )
        if reader is None:
            return False
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
        )
        if _hr(hresult) != scard.SCARD_S_SUCCESS or not states[0][1] & scard.SCARD_STATE_PRESENT:
            return False
        known = states[0][1] & ~scard.SCARD_STATE_CHANGED
        hresult, states = scard.SCardGetStatusChange(context, int(poll_s * 1000), [(reader, known)])
        if _hr(hresult) == scard.SCARD_E_TIMEOUT:
            return True
        return _hr(hresult) == scard.SCARD_S_SUCCESS and bool(
            states[0][1] & scard.SCARD_STATE_PRESENT
        )
    finally:
        scard.SCardReleaseContext(context)


def failure_reason(error):
    """The flow's ``CardFailed`` reason for a read error."""
    if isinstance(error, NotThaiIdCard):
        return "not_thai_id"
    if isinstance(error, CardPulledDuringRead):
        return "removed"
    if isinstance(error, ReaderUnavailable):
        return "no_reader"
    return "unreadable"


class CardService:
    """Card monitor and reader for the kiosk; the runner calls exactly this.

    ``CardService(put, keys, *, reader=None, read_deadline_s=5.0, settle_s=0.3,
    collect_age_band=False, collect_gender=False)``

    * ``put(event)`` is called from the service's threads: ``kiosk.flow.CardInserted()`` and
      ``CardRemoved()`` from the monitor; a :class:`~kiosk.card.thai_id.CardSummary` or
      ``kiosk.flow.CardFailed(reason)`` after each :meth:`request_read`.
    * ``keys`` has ``hash(cid) -> bytes`` (:class:`kiosk.card.repeat.RepeatKeys`).
    * ``reader`` picks the first reader whose name contains it (None: the first reader).
    * :meth:`start` / :meth:`stop` run and end the monitor thread.
    * :meth:`request_read` starts a read and returns at once. Exactly one result follows: the
      summary, ``CardFailed`` with the read's reason, or ``CardFailed("timeout")`` after
      ``read_deadline_s``. While an earlier read is
      still running within its deadline, the request joins it; while a stuck read is past its
      deadline, the request fails with ``timeout`` at once.
    * :attr:`reader_state` is one of :data:`READER_STATES`; :attr:`last_read_at` is the
      ``time.monotonic()`` of the last successful read (None before).
    """

    def __init__(
        self,
        put,
        keys,
        *,
        reader=None,
        read_deadline_s=5.0,
        settle_s=0.3,
        collect_age_band=False,
        collect_gender=False,
        poll_s=0.5,
        today=datetime.date.today,
    ):
        self._put, self._keys, self._wanted = put, keys, reader
        self.read_deadline_s, self.settle_s, self.poll_s = read_deadline_s, settle_s, poll_s
        self.collect_age_band, self.collect_gender = collect_age_band, collect_gender
        self._today = today
        self._state = "stopped"
        self.last_read_at = None
        self._stopping = threading.Event()
        self._monitor = None
        self._lock = threading.Lock()
        self._worker = None
        self._timer = None
        self._read_open = False
        self._context = None

    @property
    def reader_state(self):
        return self._state

    @property
    def is_reading(self):
        """True while a read worker is alive (a stuck one included)."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    def start(self):
        self._stopping.clear()
        self._monitor = threading.Thread(target=self._supervise, name="card-monitor", daemon=True)
        self._monitor.start()

    def stop(self):
        self._stopping.set()
        context = self._context
        if context is not None:
            scard.SCardCancel(context)
        if self._monitor is not None:
            self._monitor.join(self.poll_s * 4 + 2)
            self._monitor = None
        self._state = "stopped"

    def wait_for_idle(self, timeout):
        """Block until no read worker is alive; False on timeout (the tests use it)."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.is_reading

    # --- reads ---------------------------------------------------------------------------

    def request_read(self):
        with self._lock:
            if self.is_reading:
                if self._read_open:
                    return
                stuck = True
            else:
                stuck = False
                self._read_open = True
                self._worker = threading.Thread(target=self._read, name="card-read", daemon=True)
                timer = threading.Timer(
                    self.read_deadline_s, self._deadline_passed, (self._worker,)
                )
                timer.daemon = True
                self._timer = timer
        if stuck:
            log.warning("card read requested while an earlier read is still stuck in the reader")
            self._put(CardFailed("timeout"))
            return
        self._worker.start()
        timer.start()

    def _deadline_passed(self, worker):
        if self._settle(worker):
            log.warning("card read gave no answer within %.1f s", self.read_deadline_s)
            self._put(CardFailed("timeout"))

    def _settle(self, worker):
        """True for the first of worker and deadline to finish a given read."""
        with self._lock:
            if self._worker is not worker or not self._read_open:
                return False
            self._read_open = False
            return True

    def _read(self):
        worker = threading.current_thread()
        try:
            result = self._read_with_retry()
        except CardError as exc:
            # DEBUG: a citizen's card (pulled early, not a Thai ID) is a visit's moment, which
            # the journal would time; the flow shows the problem and ops see reader faults.
            log.debug("card read failed: %s", exc)
            result = CardFailed(failure_reason(exc))
        except Exception as exc:  # noqa: BLE001 - the citizen must get an answer, not a wait
            # Only the type: an unforeseen exception's text could quote what the card sent.
            log.error("card read failed unexpectedly (%s)", type(exc).__name__)
            result = CardFailed("unreadable")
        if self._settle(worker):
            self._timer.cancel()
            if isinstance(result, thai_id.CardSummary):
                self.last_read_at = time.monotonic()
            self._put(result)

    def _read_with_retry(self):
        for attempt in (1, 2):
            try:
                return self._read_once()
            except (NotThaiIdCard, InvalidCitizenId, CardPulledDuringRead, ReaderUnavailable):
                raise
            except CardError as exc:
                if attempt == 2 or self._stopping.is_set():
                    # A card pulled mid-read first shows as garbage or a failed transaction;
                    # only pcscd's next presence poll tells it apart from a broken card.
                    if not card_stays_present(self._wanted):
                        raise CardPulledDuringRead(
                            f"card left the reader during the read ({exc})") from exc
                    raise
                log.debug("card read failed, retrying after %.2f s: %s", self.settle_s, exc)
                self._stopping.wait(self.settle_s)

    def _read_once(self):
        started = time.monotonic()
        with connect(self._wanted) as card:
            summary = thai_id.read_summary(
                card.transmit,
                card.atr,
                self._keys,
                today=self._today(),
                collect_age_band=self.collect_age_band,
                collect_gender=self.collect_gender,
            )
        # read_ms covers connecting and the transaction too: that is what the citizen waits for.
        return dataclasses.replace(summary, read_ms=(time.monotonic() - started) * 1000)

    # --- the monitor ---------------------------------------------------------------------

    def _supervise(self):
        """Keep the monitor alive: whatever goes wrong, drop the context and start over."""
        present = False
        while not self._stopping.is_set():
            try:
                present = self._watch(present)
            except Exception:  # the monitor must outlive any surprise; say what it was
                log.exception("card monitor failed; restarting it")
            finally:
                self._release()
            if not self._stopping.is_set():
                self._stopping.wait(self.poll_s)

    def _release(self):
        context, self._context = self._context, None
        if context is not None:
            scard.SCardReleaseContext(context)

    def _set_state(self, state):
        if state != self._state:
            # A card going in or out is a visit's moment: the journal would time every visit
            # (docs/privacy.md), so only a fault of the reader is logged at INFO.
            level = logging.DEBUG if {state, self._state} <= {"ok", "no_card"} else logging.INFO
            log.log(level, "card reader state: %s", state)
            self._state = state

    def _watch(self, present):
        """Follow one PC/SC context until it fails; returns the last known card presence."""
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if _hr(hresult) != scard.SCARD_S_SUCCESS:
            self._set_state("no_service")
            return present
        self._context = context
        timeout_ms = int(self.poll_s * 1000)
        watched, known = None, scard.SCARD_STATE_UNAWARE
        while not self._stopping.is_set():
            hresult, readers = scard.SCardListReaders(context, [])
            hresult = _hr(hresult)
            if hresult in _NO_SERVICE:
                self._set_state("no_service")
                return present
            reader = (
                choose_reader(readers or [], self._wanted)
                if hresult == scard.SCARD_S_SUCCESS
                else None
            )
            if reader is None:
                self._set_state("no_reader")
                present = self._changed(present, False)
                self._stopping.wait(self.poll_s)
                continue
            if reader != watched:
                watched, known = reader, scard.SCARD_STATE_UNAWARE
            # Passing back the last state (with pcsc-lite's event counter) blocks until something
            # really changes, instead of returning at once whenever a read has the card in use.
            hresult, states = scard.SCardGetStatusChange(context, timeout_ms, [(reader, known)])
            hresult = _hr(hresult)
            if hresult in (scard.SCARD_E_TIMEOUT, scard.SCARD_E_CANCELLED):
                continue
            if hresult in _NO_SERVICE:
                self._set_state("no_service")
                return present
            if hresult != scard.SCARD_S_SUCCESS:
                # The reader went away or changed: list readers again, without spinning.
                watched = None
                self._stopping.wait(0.05)
                continue
            _name, event_state, _atr = states[0]
            known = event_state & ~scard.SCARD_STATE_CHANGED
            if event_state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                watched = None
                self._stopping.wait(0.05)
                continue
            now_present = bool(event_state & scard.SCARD_STATE_PRESENT) and not (
                event_state & scard.SCARD_STATE_MUTE
            )
            self._set_state("ok" if now_present else "no_card")
            present = self._changed(present, now_present)
        return present

    def _changed(self, was_present, is_present):
        if is_present and not was_present:
            self._put(CardInserted())
        elif was_present and not is_present:
            self._put(CardRemoved())
        return is_present
