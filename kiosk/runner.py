"""The runner: the kiosk's one main loop and the effects it carries out.

Rules of the house: only the main loop steps the flow, writes visits and draws. The card
monitor, paho's network thread, gpiozero callbacks, the scripted driver and the screen's taps
only put facts on :attr:`Runner.events`; the outbox pump is the one other writer of live rows,
touching only delivery state on its own connection (the housekeeping thread deletes only
confirmed rows). A visit and its outbox row are committed in one transaction before the
thank-you screen is drawn; when that commit fails the citizen is not thanked and the kiosk goes
out of service instead. A visit carries only its period (:mod:`kiosk.period`): the runner's
:class:`~kiosk.period.Book` says which, dates visits made before the clock synced, and closes
each period once it has ended, which releases its visits for sending. The runner holds the one
config in force: a remote change is proposed by :class:`~kiosk.telemetry.commands.Commands` and
put in force here, for every part at once. The runner also judges the kiosk's client
certificate (``client_cert``, :class:`kiosk.renewal.client_cert.ClientCert`): an expired one
suspends service, and a new one installed by the root unit ends the loop at a quiet moment so
that systemd starts the kiosk again with it.
"""

import dataclasses
import logging
import queue
import threading
import time

from kiosk import flow, logsafe
from kiosk.card.repeat import SeenCards
from kiosk.card.thai_id import CardSummary
from kiosk.clock import counts_as_synced, system_wall
from kiosk.errors import DiskFull, KioskError, StoreError
from kiosk.facts import ButtonPressed, CommandReceived, KeyPressed, MotionSeen, QuitRequested
from kiosk.period import Book
from kiosk.renewal.client_cert import REASON as CERT_REASON
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 30.0  # purge request, key rotation, disk floor: often enough, cheap enough
HEADLESS_TURN_S = 0.1  # how late a deadline may be noticed without a display
PERIOD_RETRY_S = 5.0  # after a store failure: a locked database must not stall every frame
DISK_REASON = "disk_full"
STORE_REASON = "store_error"
RECORD_REASON = "record_error"

#: Card reader states (kiosk.card.reader) as the health message names them. A card in the
#: reader is "ready" too: "card_present" in a report every minute would time each visit.
READER_HEALTH = {
    "ok": "ready", "no_card": "ready", "no_reader": "no_reader", "no_service": "error",
    "stopped": "disabled",
}


class Runner:
    """One kiosk: the flow's state, and what carries out its effects.

    Every part but the store is optional, so tests and the headless runner can leave out the
    display, the card service, GPIO or telemetry. ``events`` is the queue the parts were given
    to post on (a new one when None). ``when_key(key)`` receives keys the display does not use
    itself (the demo's insert/remove keys); ``when_shown(runner)`` is called after a new screen
    (or language) was drawn (the demo's screenshots). ``seen`` holds the repeat hashes of the
    visits rated within the repeat window, with their services, in memory only: the flow's
    ``CheckRepeat`` is answered from it (one rating per citizen per service per window).
    ``housekeeper`` (a :class:`kiosk.store.Housekeeper`) is asked to purge when the kiosk is
    idle. ``trial`` (a :class:`kiosk.update.trial.Trial`) holds the first run of an updated
    version suspended until it is proven healthy. ``client_cert`` (a
    :class:`kiosk.renewal.client_cert.ClientCert`) is the client certificate the process loaded.
    ``clock`` is monotonic; ``wall()`` returns ``(aware UTC now, synced)``
    (:func:`kiosk.clock.system_wall`).
    In demo mode the wall clock counts as synced: a developer's machine may run no timesyncd,
    and a demo's visits must still reach its collector.
    """

    def __init__(self, cfg, store, *, keys, events=None, card=None, display=None, panel=None,
                 telemetry=None, watchdog=None, housekeeper=None, rate_only=False,
                 clock=time.monotonic, wall=system_wall, when_key=None, when_shown=None,
                 trial=None, client_cert=None):
        self.cfg = cfg
        self.store = store
        self.keys = keys
        self.card = card
        self.display = display
        self.panel = panel
        self.telemetry = telemetry
        self.watchdog = watchdog
        self.housekeeper = housekeeper
        self.trial = trial
        self.client_cert = client_cert
        self._installed = None  # the install record a restart waits for a quiet moment for
        self.when_key = when_key
        self.when_shown = when_shown
        self.clock = clock
        self.wall = wall
        self.rate_only = rate_only
        self.events = queue.SimpleQueue() if events is None else events
        self.settings = flow.FlowSettings.from_config(cfg, rate_only=rate_only)
        self.state = flow.State()
        self.seen = SeenCards(cfg.flow.repeat_window_min * 60, clock=clock)
        self._candidates = {}  # the card being visited: its hash -> every hash it may have had
        self.recorded = 0
        self.book = Book(cfg.telemetry.period_s, store.closed_through())
        self._dates = {}  # event_id -> Period: dated by the book, not yet in the store
        self._is_released = False  # undated visits of an earlier run: released once, first
        self._next_period_try = float("-inf")  # the first turn releases and closes
        self._next_housekeeping = clock()
        self._stop = threading.Event()
        self._shown = None

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop):
        """Turn the loop until ``stop`` (a threading.Event) is set."""
        self._stop = stop
        if self.trial:  # first: a full disk's suspension then replaces it, and stays
            self._step(flow.ServiceSuspended(self.trial.reason))
        self._check_disk()
        self._check_cert()
        self._show()
        if self.watchdog:
            self.watchdog.ready("idle")
        while not stop.is_set():
            self.turn()
        if self.watchdog:
            self.watchdog.stopping()

    def turn(self, timeout=None):
        """One turn: take what happened, step the flow, keep the periods, draw, keep house,
        tell the watchdog."""
        if not self._is_released and self.clock() >= self._next_period_try:
            self._release_undated()  # before this turn's facts can record a visit
        if timeout is None:
            timeout = 1.0 / self.cfg.display.fps if self.display else HEADLESS_TURN_S
        try:
            facts = [self.events.get(timeout=timeout)]
        except queue.Empty:
            facts = []
        if self.display:
            # Taps join the one queue behind what the other adapters posted, hit-tested against
            # the screen drawn last turn, which is what the citizen touched.
            for tap in self.display.poll_events():
                self.events.put(tap)
        while True:
            try:
                facts.append(self.events.get_nowait())
            except queue.Empty:
                break
        for fact in facts:
            self.handle(fact)
        self.handle(flow.Tick())
        if self.trial:
            self._try_trial()
        if self.clock() >= self._next_period_try:
            self._keep_periods()
        self._show()
        if self.telemetry and self.telemetry.relay:
            self.telemetry.relay.poll()
        if self.clock() >= self._next_housekeeping:
            self._housekeeping()
        if self._installed is not None:
            self._restart_when_quiet()
        if self.watchdog:
            self.watchdog.kick()

    def _try_trial(self):
        """After an update: once this turn proves the loop, the broker and the card monitor,
        with no card in the reader, declare the version healthy, then resume at idle. A
        suspension for another cause (the disk) stays; the trial then never ends, and the
        updater rolls back."""
        if self.state.out_of_service != self.trial.reason or self.state.card_present:
            return
        if not self.trial.is_proven(watchdog=self.watchdog, telemetry=self.telemetry,
                                    card=self.card):
            return
        trial, self.trial = self.trial, None
        trial.declare_healthy()
        self._step(flow.ServiceResumed())

    def _show(self):
        """Draw the state; drawing never steps the flow."""
        if self.display is None:
            return
        self.display.show(self.state)
        shown = (self.state.screen, self.state.language)
        if shown != self._shown:
            self._shown = shown
            if self.when_shown:
                self.when_shown(self)

    # --- facts -----------------------------------------------------------------------------

    def handle(self, fact):
        """Take one fact from any adapter; the flow decides what it means.

        A fault nobody foresaw is logged and the kiosk starts again (idle, or take-card while a
        card is in: :func:`flow.after_fault`) rather than dying at the counter (a visit in
        progress is lost; everything recorded stays).
        """
        try:
            self._handle(fact)
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("unexpected fault while handling %s; starting again", type(fact).__name__)
            if self.state.screen is not flow.Screen.OUT_OF_SERVICE:
                self.state = flow.after_fault(self.state.card_present)

    def _handle(self, fact):
        # By class, never by name: kiosk.facts holds the adapters' facts, so no adapter (and
        # none of pygame, gpiozero or paho) is imported to recognise them.
        match fact:
            case _ if isinstance(fact, flow.EVENT_TYPES):
                self._step(fact)
            case CardSummary():
                self._card_read(fact)
            case CommandReceived() if self.telemetry:
                self._command(fact)
            case ButtonPressed(number=number):
                self._button(number)
            case MotionSeen() if self.display:
                self.display.wake()
            case KeyPressed() if self.when_key:
                self.when_key(fact.key)
            case QuitRequested():
                log.info("quit requested from the keyboard (display.debug is on)")
                self._stop.set()
            case _:
                log.warning("ignored a fact of type %s", type(fact).__name__)

    def _card_read(self, summary):
        """Turn the card module's summary into the flow's event; whether it is a repeat is
        asked once the service is known (:meth:`_check_repeat`)."""
        # Current and previous key: a card seen just before a key rotation still counts.
        self._candidates = {summary.repeat_hash: summary.repeat_candidates}
        if self.telemetry:
            self.telemetry.health.note_card_read()
        self._step(flow.CardRead(repeat_hash=summary.repeat_hash, expired=summary.expired,
                                 age_band=summary.age_band, gender=summary.gender))

    def _button(self, number):
        """A physical choice button means the ``number``-th choice of the screen shown, which
        only the display knows (it turns its own pages); a kiosk without a screen rates only."""
        if self.display:
            event = self.display.choose(number, self.state.screen)
        else:
            event = flow.RatingChosen(number) if self.state.screen is flow.Screen.RATING else None
        if event is not None:
            self._step(event)

    def _command(self, received):
        """Ops' command, judged against the config in force; a new config is put in force here."""
        proposal = self.telemetry.commands.handle(received, self.cfg)
        if proposal is None:
            return
        try:
            self.reconfigure(proposal.config)
        except Exception as exc:  # noqa: BLE001 - ops get an answer, the visit goes on
            log.exception("remote config version %s not fully put in force",
                          proposal.config.remote_version)
            self.telemetry.commands.refuse(proposal, f"not put in force: {type(exc).__name__}")
            return
        self.telemetry.commands.confirm(proposal)

    def _step(self, event):
        before = self.state.screen
        self.state, effects = flow.step(self.state, event, self.clock(), self.settings)
        answers = []  # stepped once this step's effects are done, before any other fact
        for effect in effects:
            if isinstance(effect, flow.CheckRepeat):
                answers.append(self._check_repeat(effect))
            elif not self._execute(effect):
                break
        if self.state.screen is not before:
            # DEBUG only: the journal's time stamp on each screen would time every visit, and
            # the reason screen is asked for low ratings only (docs/privacy.md).
            log.debug("screen %s -> %s", before.value, self.state.screen.value)
        for answer in answers:
            self._step(answer)
        if self.state.visit is None:
            self._candidates = {}  # the visit is over: its card's hashes are needed no more

    def _check_repeat(self, check):
        """Did this card rate this service within the window? Asked with every hash the card
        may have been noted under (a key rotation in between)."""
        candidates = self._candidates.get(check.repeat_hash, (check.repeat_hash,))
        return flow.RepeatChecked(self.seen.is_repeat(candidates, check.service_id))

    # --- effects ---------------------------------------------------------------------------

    def _execute(self, effect):
        """Carry out one effect; False stops the rest of this step's effects."""
        match effect:
            case flow.RecordVisit(record=record):
                return self._record(record)
            case flow.ReadCard() if self.card is None:
                self.events.put(flow.CardFailed("no_reader"))
            case flow.ReadCard():
                self.card.request_read()
            case flow.Beep() | flow.SetStatusLight():
                handled = self.panel is not None and self.panel.apply(effect)
                if isinstance(effect, flow.Beep) and self.display and (
                        not handled or effect.kind is flow.BeepKind.REMINDER):
                    self.display.beep(effect.kind)  # the card reminder is said as well
            case flow.ShowScreen(screen=screen) if self.watchdog:
                self.watchdog.status(screen.value)
        return True

    def _record(self, record):
        period = self.book.period_for(*self._wall_now())
        # The flow knows the questions, the config where they were asked.
        record = dataclasses.replace(record, service_point_id=self.cfg.kiosk.service_point_id)
        try:
            row = self.store.record_visit(
                record, **visit_message(self.cfg.kiosk.id, self.cfg.kiosk.mode), period=period)
        except (KioskError, ValueError) as exc:
            # Not kept, so not thanked: the kiosk stops taking visits until the cause is gone.
            log.error("visit not recorded, going out of service: %s", exc)
            if isinstance(exc, DiskFull):
                reason = self._disk_reason()
            elif isinstance(exc, StoreError):
                reason = f"{STORE_REASON}: {exc}"
            else:  # the contract refused the visit: only a new config can mend that
                reason = f"{RECORD_REASON}: {exc}"
            self._step(flow.ServiceSuspended(reason))
            return False
        self.recorded += 1
        if period is None:
            self.book.hold(row.event_id, self.clock())  # dated once the clock syncs
        if record.repeat_hash and record.rating is not None:
            # Only once kept, and rated: a lost visit, or one left before the rating, was not.
            self.seen.note(record.repeat_hash, record.service_id)
        return True

    # --- periods ---------------------------------------------------------------------------

    def _wall_now(self):
        wall, synced = self.wall()
        return wall, counts_as_synced(synced, self.cfg.kiosk.mode)

    def _release_undated(self):
        """Visits an earlier run held undated lost their monotonic time with it: they go out
        with ``period: null`` before this run records any."""
        try:
            released = self.store.release_undated()
        except StoreError as exc:
            log.error("visits of an earlier run not released, will retry in %.0f s: %s",
                      PERIOD_RETRY_S, exc)
            self._next_period_try = self.clock() + PERIOD_RETRY_S
            return
        self._is_released = True
        if released:
            log.info("%d visit(s) recorded before the clock synced released without a period",
                     released)
        self._notify_outbox()

    def _keep_periods(self):
        """Date the held visits once the clock is synced, then close the periods that have
        ended, which releases their visits. In memory each turn; the store is written only
        when there is something to write. A store failure is logged and retried a little
        later: the rows stay held, and the dates wait in memory."""
        wall, synced = self._wall_now()
        if synced and self.book.held:
            self._dates.update(self.book.date_held(wall, self.clock()))
        through = self.book.to_close(wall, synced, self.clock())
        if not self._dates and through is None:
            return
        try:
            if self._dates:  # first: a back-dated visit must be in its period when it closes
                self.store.date_visits(self._dates)
                self._dates = {}
            if through is not None:
                closed = self.store.close_periods(
                    through, topic=topics.kiosk_topic(self.cfg.kiosk.id, "period"),
                    mode=self.cfg.kiosk.mode, now=wall)
                self.book.closed(through)
                if closed:
                    self._notify_outbox()
        except StoreError as exc:
            log.error("periods not kept, will retry in %.0f s: %s", PERIOD_RETRY_S, exc)
            self._next_period_try = self.clock() + PERIOD_RETRY_S

    def _notify_outbox(self):
        if self.telemetry:
            self.telemetry.outbox.notify()

    # --- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self):
        self._next_housekeeping = self.clock() + HOUSEKEEPING_S
        self.keys.rotate_if_due()
        self._check_disk()
        if self.client_cert:
            self.client_cert.refresh()
            self._check_cert()
            self._installed = self.client_cert.installed()
        if self.telemetry:
            self.telemetry.health.note_reader(
                READER_HEALTH.get(self.card.reader_state, "error") if self.card else "disabled")
        if self.housekeeper and self.state.screen is flow.Screen.IDLE:
            # Its thread does the work: a purge can take many frames (docs/benchmarks.md).
            self.housekeeper.request()

    def _check_disk(self):
        """Below the disk floor the kiosk stops taking visits instead of losing them.

        A suspension for the disk or a failed write ends by itself once the cause is gone, so
        a technician who frees space (or a storage hiccup that passes) needs no restart.
        """
        reason = self.state.out_of_service or ""
        try:
            has_room = self.store.has_room()
            if reason.startswith(STORE_REASON):
                # Reads may work while writes do not: only a write proves the store is back.
                self.store.set_state("write_check", "ok")
        except StoreError as exc:
            log.error("store still failing: %s", exc)
            return
        if not has_room and not reason.startswith(DISK_REASON):
            self._step(flow.ServiceSuspended(self._disk_reason()))
        elif has_room and reason.startswith((DISK_REASON, STORE_REASON)):
            self._step(flow.ServiceResumed())

    def _check_cert(self):
        """An expired client certificate suspends service: the broker refuses it, so only the
        technician's line can say so. Judged while no other cause suspends the kiosk and no
        visit is open (one is never cut short for it: the next housekeeping judges again); the
        suspension ends by itself once the certificate is no longer expired."""
        if self.client_cert is None:
            return
        wall, synced = self.wall()  # never judged on an unsynced clock, not even in a demo
        reason = self.client_cert.expired(wall, synced)
        current = self.state.out_of_service
        if reason and current is None and self.state.visit is None:
            self._step(flow.ServiceSuspended(reason))
        elif reason is None and (current or "").startswith(CERT_REASON):
            self._step(flow.ServiceResumed())

    def _restart_when_quiet(self):
        """The root unit installed a new client certificate: end the loop once nobody is at
        the kiosk (idle or out of service, no card in, no visit), with exit status 0; systemd
        (``Restart=always``) starts it again, and ``LoadCredential`` copies the new one."""
        state = self.state
        if (state.screen not in (flow.Screen.IDLE, flow.Screen.OUT_OF_SERVICE)
                or state.card_present or state.visit is not None):
            return
        record, self._installed = self._installed, None
        log.info("new client certificate installed (serial %x, expires %s); restarting to "
                 "load it", record["serial"], logsafe.printable(record["not_after"]))
        self._stop.set()

    def _disk_reason(self):
        """What the technician reads on the out-of-service screen."""
        return (f"{DISK_REASON}: {self.store.free_mb():.0f} MB free under "
                f"{self.store.data_dir}, {self.store.min_free_mb} MB needed")

    def reconfigure(self, cfg):
        """Put ``cfg`` in force (a remote config whose layer is already on disk).

        It takes effect at once, also for a visit in progress: new timeouts and catalogue,
        and above all what the card module may collect, so switching age band or gender off
        stops them with the next card. Each part gets its own share of it; none keeps a copy
        of the whole.
        """
        self.cfg = cfg
        self.settings = flow.FlowSettings.from_config(cfg, rate_only=self.rate_only)
        if self.telemetry:  # first: ops must see the catalogue and version in force
            self.telemetry.reconfigure(cfg)
        if self.card:
            self.card.collect_age_band = cfg.flow.collect_age_band
            self.card.collect_gender = cfg.flow.collect_gender
        if (self.state.out_of_service or "").startswith(RECORD_REASON):
            self._step(flow.ServiceResumed())
        if self.display:
            self.display.reconfigure(cfg)


def visit_message(kiosk_id, mode):
    """Where a finished visit goes and how it is marked: the keywords of
    ``Store.record_visit`` besides the visit and its period; the mode goes in here only.
    """
    return {"topic": topics.kiosk_topic(kiosk_id, "visit"), "mode": mode}
