"""``kiosk-fleet simulate``: a fleet of simulated kiosks on a real broker, over the real contract.

Each simulated kiosk has its own broker account (the caller gives the passwords, or the
simulator adds accounts on a :class:`kiosk.rigs.broker.Broker`), its own instance and a service
point of the shipped sample registry, spread across the provinces. It speaks only through the
contract's builders (:func:`kiosk.visit.payload`, :mod:`kiosk.telemetry.topics`), as a kiosk
with the runner's delivery rules would: a period's visits are held until the period ends, then
released with the period's count; a message stays pending until the collector acks it and is
resent after each reconnect. Visits come in office hours (Bangkok time), with ratings and copy
answers that differ by department and the schema-3 answers (not sure, other service, card left
in, answer changed) at plausible rates; health reports go out every ``health_s`` simulated seconds.
An outage drops the connection with the Last Will (MQTT 5 reason 0x04) and reconnects later
with a new epoch; what was released meanwhile goes out then.

Each kiosk also takes the retained ``update`` command (a staged rollout, docs/updates.md) as
the kiosk's root updater would, in ``update_step_s`` real seconds a step: it reports health with
``update`` moving requested, downloading, verified, waiting, switched, then healthy (running
the new version) or, for the kiosks in ``fail_updates``, rolled_back with a reason (still
running the old one). Those in ``wait_updates`` stay ``waiting`` (an office that does not
close) for ``update_wait_s``. An empty retained message withdraws a request not yet switched,
and the kiosk then reports what the root updater reports: ``refused``, with a reason starting
"withdrawn" (not a failure: the same command sent again is taken again).

Simulated time runs ``factor`` times faster than the wall clock, so a test can run an office
day in seconds. Each kiosk is one paho client with its own network thread (``loop_start``):
simple, and enough for a few hundred kiosks per process.
"""

import argparse
import datetime as dt
import math
import random
import threading
import time
from dataclasses import dataclass, field

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from kiosk import visit
from kiosk.errors import CommandRejected
from kiosk.fleet import registry, registry_sample, rollout
from kiosk.period import BANGKOK, Period, count_event_id
from kiosk.store import new_event_id
from kiosk.telemetry import topics

VERSION = "0.9.0-sim"
MODE = "production"
#: Visits an hour at a busy counter's peak; the hours around it follow :data:`HOURLY_SHAPE`.
PEAK_PER_HOUR = 12.0
#: Share of the peak rate in each local hour: doors at 08:30, a lunch dip, closing at 16:30.
HOURLY_SHAPE = {8: 0.5, 9: 0.9, 10: 1.0, 11: 0.8, 12: 0.4, 13: 0.8, 14: 0.9, 15: 0.7, 16: 0.3}
#: Per department code: weights of ratings 1-5, and the chance a citizen is asked for a copy.
#: They differ so that statistics by department have something to tell apart.
DEPARTMENTS = {
    "dopa": ((3, 5, 15, 40, 37), 0.08),
    "dlt": ((8, 10, 22, 35, 25), 0.25),
    "doe": ((4, 6, 20, 40, 30), 0.15),
    "dol": ((10, 12, 25, 33, 20), 0.35),
    "rd": ((2, 4, 14, 42, 38), 0.05),
    "sso": ((6, 9, 20, 38, 27), 0.20),
}
DEFAULT_DEPARTMENT = ((5, 8, 20, 37, 30), 0.15)
#: The reasons the screens offer (schema 3 retired "copies_requested").
REASON_WEIGHTS = {"waiting_time": 5, "staff": 2, "unclear_process": 2, "other": 1}
COPIES_ASKED = ("id_card", "house_registration", "both")
#: Schema 3's answers, at rates a pilot might see: a citizen not sure whether a copy was asked,
#: one whose service is not listed ("other service"), a card still in when the visit is
#: committed (of the card visits), an answer changed on the confirm screen.
NOT_SURE_RATE = 0.06
OTHER_SERVICE_RATE = 0.04
CARD_LEFT_IN_RATE = 0.07
UNDONE_RATE = 0.05
#: Why a simulated update rolls back: what a kiosk's updater says when the new version never
#: declared itself healthy.
ROLLBACK_REASON = "not healthy within 120 s: the broker was never connected"
#: What a simulated kiosk's updater says when its request is withdrawn before the switch; it
#: starts as the real updater's does (:data:`kiosk.fleet.rollout.WITHDRAWN_PREFIX`).
WITHDRAWN_REASON = (f"{rollout.WITHDRAWN_PREFIX}: the request was withdrawn before the kiosk "
                    "was stopped; nothing was changed")
#: The updater's steps before the verdict (docs/updates.md), as health reports them.
UPDATE_STEPS = ("requested", "downloading", "verified", "waiting", "switched")
#: Largest update command a simulated kiosk reads (a kiosk's telemetry.max_command_bytes).
MAX_COMMAND_BYTES = 1 << 20
#: Where an abandoned visit ends, by weight, in question order: most walk away at a question.
ABANDONED_AT = {"choose_service": 2, "copy_check": 2, "rating": 5, "reason": 1}


def stamp(moment, mono_s):
    """The ``at``/``clock_synced``/``mono_s`` of a status or health report at ``moment``."""
    at = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"
    return {"at": at, "clock_synced": True, "mono_s": round(mono_s, 3)}


class SimClock:
    """Simulated time: ``start`` (aware) plus ``factor`` times the real seconds since creation."""

    def __init__(self, start, factor):
        self.start, self.factor = start, factor
        self._origin = time.monotonic()

    def now(self):
        return self.start + dt.timedelta(seconds=self.elapsed_s())

    def elapsed_s(self):
        return (time.monotonic() - self._origin) * self.factor


@dataclass(frozen=True)
class Site:
    """Where a simulated kiosk stands: a point of the sample registry and its department."""

    point: object  # kiosk.fleet.registry_csv.ServicePoint
    department: str
    agency: str
    ministry: str


def sites(count):
    """``count`` sites spread over the 77 provinces and the sample's departments (a point is
    shared once there are more kiosks than points)."""
    offices = registry.offices()
    points = registry_sample.generate(registry.provinces(), offices)
    per_province = len(offices)
    provinces = len(points) // per_province
    chosen = []
    for index in range(count):
        province, round_ = index % provinces, index // provinces
        office_index = (province + round_) % per_province  # each round: the next office
        point = points[province * per_province + office_index]
        office = offices[office_index]
        chosen.append(Site(point, office.code, office.department_en, office.ministry_en))
    return chosen


@dataclass
class Tally:
    """What one kiosk did: the honest record a test compares the collector's store with."""

    visits: int = 0
    periods: int = 0
    health: int = 0
    connects: int = 0
    outages: int = 0
    resent: int = 0
    counted: dict = field(default_factory=dict)  # period text -> visits counted


class SimKiosk:
    """One simulated kiosk: its connection, its held and pending messages, its tally."""

    def __init__(self, kiosk_id, password, site, *, host, port, period_s, rng, health_s,
                 update_step_s=0.05, update_outcome="healthy", update_wait_s=60.0):
        self.kiosk_id, self.password, self.site = kiosk_id, password, site
        self.version = VERSION  # running now; the new one once an update is healthy
        self.update = None  # topics.UpdateState of the latest update, as health reports it
        #: "healthy", "rolled_back" or "waits" (stays waiting for update_wait_s).
        self.update_outcome = update_outcome
        self.update_step_s, self.update_wait_s = update_step_s, update_wait_s
        self.clock = None  # the simulation's SimClock, for the update reports' stamps
        self._updating = None  # the _Update under way, or the latest one
        self._update_lock = threading.Lock()  # one of a withdrawal and a step at a time
        self.host, self.port, self.period_s, self.health_s = host, port, period_s, health_s
        self.rng = rng
        self.instance = new_event_id()
        self.epoch = 0
        self.tally = Tally()
        self._lock = threading.Lock()
        self._held = {}  # period -> [(event_id, payload)] not yet released
        self._pending = {}  # event_id -> (kind, payload) released, not acked
        self._client = None
        self._connected = threading.Event()
        self.outage_until = None
        self.next_health = None

    # --- connection -------------------------------------------------------------------------

    def connect(self, moment):
        """Connect with the ``lost`` status as Last Will; announce once the broker accepts."""
        self.epoch += 1
        self.tally.connects += 1
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.kiosk_id,
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(self.kiosk_id, self.password)
        client.will_set(topics.kiosk_topic(self.kiosk_id, "status"),
                        self._status("lost", moment), qos=1, retain=True)
        client.on_connect = lambda c, u, f, rc, p: self._on_connect(c, rc, moment)
        client.on_message = self._on_message
        client.on_disconnect = lambda *a: self._connected.clear()
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client

    def _status(self, state, moment):
        return topics.status_payload(state, self.epoch, VERSION, stamp(moment, 0.0),
                                     instance=self.instance)

    def _on_connect(self, client, reason_code, moment):
        if reason_code.is_failure:
            return
        client.subscribe(topics.ack_topic(self.kiosk_id), qos=1)
        client.subscribe(topics.cmd_topic(self.kiosk_id, "update"), qos=1)
        client.publish(topics.kiosk_topic(self.kiosk_id, "status"),
                       self._status("online", moment), qos=1, retain=True)
        client.publish(topics.kiosk_topic(self.kiosk_id, "pin"), self._pin(), qos=1,
                       retain=True)
        self._connected.set()
        self.resend()

    def _pin(self):
        point = self.site.point
        kiosk = _Namespace(service_point_id=point.id, name_th=point.name_th,
                           name_en=point.name_en, agency=self.site.agency,
                           ministry=self.site.ministry, province=point.province, lat=point.lat,
                           lon=point.lon, mode=MODE)
        return topics.service_point_payload(_Namespace(kiosk=kiosk, services=point.services))

    def wait_for_connected(self, timeout):
        return self._connected.wait(timeout)

    def drop(self, moment, back_at):
        """An outage: the connection ends as if the network went (the broker sends the will)."""
        self.tally.outages += 1
        self.outage_until = back_at
        self._connected.clear()
        self._client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
        self._client.loop_stop()

    def close(self, moment):
        """A clean stop: ``offline``, then disconnect."""
        if self._connected.is_set():
            self._client.publish(topics.kiosk_topic(self.kiosk_id, "status"),
                                 self._status("offline", moment), qos=1,
                                 retain=True).wait_for_publish(5)
            self._client.disconnect()
        self._client.loop_stop()

    # --- messages ---------------------------------------------------------------------------

    def _on_message(self, client, userdata, message):
        if message.topic == topics.cmd_topic(self.kiosk_id, "update"):
            self._on_update(message)
        else:
            self._on_ack(client, userdata, message)

    # --- the root updater, simulated --------------------------------------------------------

    def _on_update(self, message):
        """Start the update the command asks for (on its own thread, as the root updater
        runs apart from the kiosk), or withdraw the one not yet switched (empty message)."""
        under_way = self._updating
        if not message.payload:
            if under_way is not None:
                self._withdraw(under_way)
            return
        try:
            release = topics.parse_command(message.topic, message.payload,
                                           kiosk_id=self.kiosk_id,
                                           max_bytes=MAX_COMMAND_BYTES,
                                           applied_version=None).release
        except CommandRejected:
            return
        if under_way is not None and under_way.release == release and \
                not under_way.cancel.is_set():
            return  # the retained command again, after a reconnect
        if release.version == self.version:
            self.update = topics.UpdateState("healthy", release.version, None, release.rollout)
            self._report_update()
            return
        self._updating = _Update(release, threading.Event())
        threading.Thread(target=self._run_update, args=(self._updating,), daemon=True,
                         name=f"update-{self.kiosk_id}").start()

    def _withdraw(self, under_way):
        """The request withdrawn: before the switch, the update stops and says so as the root
        updater does (``refused``, "withdrawn: ..."); after it, or once over, nothing."""
        with self._update_lock:
            if under_way.is_switched or under_way.cancel.is_set():
                return
            under_way.cancel.set()
            release = under_way.release
            self.update = topics.UpdateState("refused", release.version, WITHDRAWN_REASON,
                                             release.rollout)
        self._report_update()

    def _run_update(self, under_way):
        release, cancel = under_way.release, under_way.cancel
        for state in UPDATE_STEPS:
            if cancel.wait(self.update_step_s):
                return  # withdrawn before the switch: the kiosk stays as it is
            with self._update_lock:
                if cancel.is_set():
                    return
                self.update = topics.UpdateState(state, release.version, None,
                                                 release.rollout)
                under_way.is_switched = state == "switched"
            self._report_update()
            if state == "waiting" and self.update_outcome == "waits" and \
                    cancel.wait(self.update_wait_s):
                return
        time.sleep(self.update_step_s)  # the trial: after the switch, no withdrawing
        if self.update_outcome == "rolled_back":
            self.update = topics.UpdateState("rolled_back", release.version, ROLLBACK_REASON,
                                             release.rollout)
        else:
            self.version = release.version
            self.update = topics.UpdateState("healthy", release.version, None, release.rollout)
        self._report_update()

    def _report_update(self):
        if self.clock is None:
            moment, mono_s = dt.datetime.now(dt.UTC), time.monotonic()
        else:
            moment, mono_s = self.clock.now(), self.clock.elapsed_s()
        self.report_health(moment, mono_s)

    def _on_ack(self, client, userdata, message):
        try:
            ids = topics.parse_ack(message.payload)
        except ValueError:
            return
        with self._lock:
            for event_id in ids:
                self._pending.pop(event_id, None)

    @property
    def pending(self):
        with self._lock:
            return len(self._pending)

    def resend(self):
        """Publish every released message not yet acked (after a connect, or when late)."""
        with self._lock:
            pending = list(self._pending.values())
        if not self._connected.is_set():
            return
        for kind, payload in pending:
            self._client.publish(topics.kiosk_topic(self.kiosk_id, kind), payload, qos=1)
        self.tally.resent += len(pending)

    def _release(self, messages):
        with self._lock:
            for event_id, kind, payload in messages:
                self._pending[event_id] = (kind, payload)
        if self._connected.is_set():
            for _, kind, payload in messages:
                self._client.publish(topics.kiosk_topic(self.kiosk_id, kind), payload, qos=1)

    def record_visit(self, moment):
        """One citizen at the counter at ``moment``, held in its period."""
        weights, copy_rate = DEPARTMENTS.get(self.site.department, DEFAULT_DEPARTMENT)
        rng = self.rng
        services = self.site.point.services
        completed = rng.random() < 0.92
        rating = rng.choices(visit.RATINGS, weights)[0]
        copy = (rng.choice(COPIES_ASKED) if rng.random() < copy_rate else "none")
        if rng.random() < NOT_SURE_RATE:
            copy = "not_sure"
        service_id = (visit.OTHER_SERVICE if rng.random() < OTHER_SERVICE_RATE
                      else rng.choice(services).id)
        reason = None
        if rating <= 2:
            reason = rng.choices(list(REASON_WEIGHTS), list(REASON_WEIGHTS.values()))[0]
        step = "confirm"  # where a completed visit commits
        if not completed:
            step = rng.choices(list(ABANDONED_AT), list(ABANDONED_AT.values()))[0]
            if step == "reason" and rating > 2:
                rating = rng.choice((1, 2))  # only a low rating is asked why
            # Left on ``step``: its answer and every later one were never given.
            given = list(ABANDONED_AT).index(step)
            service_id, copy, rating, reason = (
                answer if i < given else None
                for i, answer in enumerate((service_id, copy, rating, reason)))
        verified = rng.random() < 0.8
        period = Period.of(moment, self.period_s)
        event_id = new_event_id()
        payload = visit.payload(
            event_id=event_id, instance=self.instance, mode=MODE, period=period,
            outcome="completed" if completed else "abandoned", step=step, verified=verified,
            expired=(rng.random() < 0.03) if verified else None,
            service_id=service_id, copy_answer=copy, rating=rating, reason=reason,
            card_in_at_commit=(rng.random() < CARD_LEFT_IN_RATE) if verified else None,
            undone=rng.random() < UNDONE_RATE,
            language="th" if rng.random() < 0.9 else "en",
            duration_s=int(rng.uniform(15, 90)), service_point_id=self.site.point.id)
        self._held.setdefault(period, []).append((event_id, "visit", payload))
        self.tally.visits += 1

    def held(self):
        """``[(event_id, kind, payload)]`` recorded and not yet released, oldest period first."""
        return [message for period in sorted(self._held) for message in self._held[period]]

    def close_periods(self, moment):
        """Release every held period that has ended, with its count."""
        for period in [p for p in self._held if p.end <= moment]:
            held = self._held.pop(period)
            count_id = count_event_id(self.instance, period)
            count = topics.period_payload(event_id=count_id, instance=self.instance, mode=MODE,
                                          period=period, visits=len(held))
            self._release([*held, (count_id, "period", count)])
            self.tally.periods += 1
            self.tally.counted[period.text] = len(held)

    def report_health(self, moment, mono_s):
        if not self._connected.is_set():
            return
        rng = self.rng
        payload = topics.health_payload(
            mode=MODE, uptime_s=mono_s, load_1m=rng.uniform(0.05, 0.6),
            disk_free_mb=rng.uniform(9000, 12000), mem_free_mb=rng.uniform(300, 600),
            outbox_depth=self.pending, outbox_oldest_s=None, dead_letters=0, reader="ready",
            card_reads_ok=None, config_version=1, version=self.version,
            stamp=stamp(moment, mono_s), cpu_temp_c=round(rng.uniform(45, 60), 1), screen="on",
            update=self.update)
        self._client.publish(topics.kiosk_topic(self.kiosk_id, "health"), payload, qos=0)
        self.tally.health += 1


@dataclass
class _Update:
    """An update a simulated kiosk's updater runs: its release, the Event a withdrawal sets,
    and whether it has switched (from then on a withdrawal changes nothing)."""

    release: topics.WantedRelease
    cancel: threading.Event
    is_switched: bool = False


class _Namespace:
    def __init__(self, **values):
        self.__dict__.update(values)


def visits_expected(rng, moment, step_s):
    """Visits arriving in ``step_s`` simulated seconds from ``moment`` (Poisson, by the local
    hour's share of the peak)."""
    share = HOURLY_SHAPE.get(moment.astimezone(BANGKOK).hour, 0.0)
    mean = PEAK_PER_HOUR * share * step_s / 3600
    if mean <= 0:
        return 0
    # Knuth's method: the means here are small (well under one per step).
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class Simulation:
    """``kiosks`` (``[(kiosk_id, password)]``) run from ``start`` (simulated, aware) for
    ``hours`` simulated hours at ``factor`` times real time.

    ``outage_rate`` is the chance per kiosk and simulated hour of an outage lasting
    ``outage_s`` simulated seconds; ``tick_s`` the real seconds between steps.
    """

    def __init__(self, kiosks, *, host, port, start, hours, factor, period_s=3600, seed=1,
                 health_s=300, outage_rate=0.05, outage_s=1800, tick_s=0.02,
                 update_step_s=0.05, fail_updates=(), wait_updates=(), update_wait_s=60.0):
        self.rng = random.Random(seed)
        self.start, self.hours, self.factor = start, hours, factor
        self.period_s, self.tick_s = period_s, tick_s
        self.outage_rate, self.outage_s, self.health_s = outage_rate, outage_s, health_s
        self.kiosks = [
            SimKiosk(kiosk_id, password, site, host=host, port=port, period_s=period_s,
                     rng=random.Random(self.rng.random()), health_s=health_s,
                     update_step_s=update_step_s, update_wait_s=update_wait_s,
                     update_outcome=("rolled_back" if kiosk_id in fail_updates else
                                     "waits" if kiosk_id in wait_updates else "healthy"))
            for (kiosk_id, password), site in zip(kiosks, sites(len(kiosks)), strict=True)]

    def run(self, *, connect_timeout=10.0):
        """Connect every kiosk, run the simulated hours, release the last periods; returns the
        kiosks (their tallies). Call :meth:`settle` to wait for the acks, :meth:`stop` after."""
        clock = self.connect(connect_timeout=connect_timeout)
        end = self.start + dt.timedelta(hours=self.hours)
        last = self.start
        while (now := clock.now()) < end:
            step_s = (now - last).total_seconds()
            for kiosk in self.kiosks:
                self._step(kiosk, now, step_s, clock)
            last = now
            time.sleep(self.tick_s)  # the simulator's tick: real time passing is its input
        for kiosk in self.kiosks:
            if kiosk.outage_until is not None:
                self._reconnect(kiosk, end)
            kiosk.close_periods(Period.of(end, self.period_s).end)
        return self.kiosks

    def connect(self, *, connect_timeout=10.0):
        """Connect every kiosk (each announces itself and takes its commands) and return the
        simulation's clock; :meth:`run` starts so, and a test that only wants kiosks on line
        (to take a rollout's commands) calls it alone."""
        clock = SimClock(self.start, self.factor)
        for kiosk in self.kiosks:
            kiosk.clock = clock
            kiosk.connect(clock.now())
            kiosk.next_health = self.start
        for kiosk in self.kiosks:
            if not kiosk.wait_for_connected(connect_timeout):
                raise TimeoutError(f"{kiosk.kiosk_id} did not connect in {connect_timeout} s")
        return clock

    def _step(self, kiosk, now, step_s, clock):
        for _ in range(visits_expected(kiosk.rng, now, step_s)):
            kiosk.record_visit(now)
        kiosk.close_periods(now)
        if kiosk.outage_until is not None:
            if now >= kiosk.outage_until:
                self._reconnect(kiosk, now)
            return
        if now >= kiosk.next_health:
            kiosk.report_health(now, clock.elapsed_s())
            kiosk.next_health = now + dt.timedelta(seconds=self.health_s)
        if kiosk.rng.random() < self.outage_rate * step_s / 3600:
            kiosk.drop(now, now + dt.timedelta(seconds=self.outage_s))

    def _reconnect(self, kiosk, now):
        kiosk.outage_until = None
        kiosk.connect(now)

    def settle(self, timeout, resend_s=1.0):
        """Wait until every kiosk's released messages are acked, resending what is still
        pending every ``resend_s``; True when none is left."""
        deadline = time.monotonic() + timeout
        next_resend = time.monotonic() + resend_s
        while any(k.pending for k in self.kiosks):
            now = time.monotonic()
            if now > deadline:
                return False
            if now >= next_resend:
                for kiosk in self.kiosks:
                    kiosk.resend()
                next_resend = now + resend_s
            time.sleep(0.02)  # polling interval of a count
        return True

    def stop(self):
        for kiosk in self.kiosks:
            kiosk.close(self.start + dt.timedelta(hours=self.hours))

    def totals(self):
        """Sums of every kiosk's tally (``counted`` left out)."""
        names = ("visits", "periods", "health", "connects", "outages", "resent")
        return {name: sum(getattr(k.tally, name) for k in self.kiosks) for name in names}


# --- kiosk-fleet simulate -------------------------------------------------------------------

def add_arguments(parser):
    parser.add_argument("--kiosks", type=int, default=20, help="how many kiosks (default 20)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--passwords", metavar="FILE", required=True,
                        help="the kiosks' accounts, one 'kiosk_id:password' a line (the first "
                             "--kiosks lines are used)")
    parser.add_argument("--day", type=dt.date.fromisoformat, default=None,
                        help="the simulated day (default: today in Bangkok)")
    parser.add_argument("--hours", type=float, default=10.0,
                        help="simulated hours from 07:30 Bangkok time (default 10)")
    parser.add_argument("--factor", type=float, default=3600.0,
                        help="simulated seconds per real second (default 3600)")
    parser.add_argument("--period-s", type=int, default=3600)
    parser.add_argument("--outage-rate", type=float, default=0.05,
                        help="outages per kiosk and simulated hour (default 0.05)")
    parser.add_argument("--seed", type=int, default=1)


def _accounts(path, count):
    accounts = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                kiosk_id, _, password = line.strip().partition(":")
                accounts.append((kiosk_id, password))
    if len(accounts) < count:
        raise SystemExit(f"{path} holds {len(accounts)} accounts, not {count}")
    return accounts[:count]


def main(args):
    day = args.day or dt.datetime.now(BANGKOK).date()
    start = dt.datetime.combine(day, dt.time(7, 30), BANGKOK)
    simulation = Simulation(_accounts(args.passwords, args.kiosks), host=args.host,
                            port=args.port, start=start, hours=args.hours, factor=args.factor,
                            period_s=args.period_s, outage_rate=args.outage_rate,
                            seed=args.seed)
    try:
        simulation.run()
        settled = simulation.settle(60)
    finally:
        simulation.stop()
    print(" ".join(f"{name}={value}" for name, value in simulation.totals().items()))
    return 0 if settled else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    raise SystemExit(main(parser.parse_args()))
