"""``/metrics`` for Prometheus: read from the store at each scrape, so every console replica
reports the same. Counters end in ``_total`` (the exposition format's rule).

Kiosks by state and open alarms by kind are gauges; visits by outcome, messages stored by kind
and alarms raised are counters (the store only grows). Ingest lag is the age of the newest
message any kiosk got through, and the oldest visit still waiting in a kiosk's outbox, from
the health reports. Malformed messages are those the collectors refused, by reason, as they
stored them with each batch.
"""

import datetime as dt

from flask import Blueprint, Response
from peewee import fn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from kiosk.fleet import alarms
from kiosk.fleet.console.app import console

blueprint = Blueprint("metrics", __name__)
STATES = ("online", "offline", "lost", "unknown")


class StoreCollector:
    """A prometheus_client collector over one :class:`kiosk.fleet.db.FleetDb`."""

    def __init__(self, fleet_db, clock=lambda: dt.datetime.now(dt.UTC)):
        self.db, self.clock = fleet_db, clock

    def collect(self):
        db = self.db
        Kiosk, Visit = db.KioskRow, db.FleetVisit
        states = dict.fromkeys(STATES, 0)
        for state, count in Kiosk.select(Kiosk.state, fn.COUNT(Kiosk.kiosk_id)).group_by(
                Kiosk.state).tuples():
            states[state if state in states else "unknown"] += count
        kiosks = GaugeMetricFamily("kiosk_fleet_kiosks", "Kiosks by their last known state",
                                   labels=["state"])
        for state, count in states.items():
            kiosks.add_metric([state], count)
        yield kiosks

        visits = CounterMetricFamily("kiosk_fleet_visits", "Visits stored, by outcome "
                                     "(demo visits apart)", labels=["outcome", "mode"])
        for outcome, is_demo, count in (Visit.select(Visit.outcome, Visit.is_demo,
                                                     fn.COUNT(Visit.event_id))
                                        .group_by(Visit.outcome, Visit.is_demo).tuples()):
            visits.add_metric([outcome, "demo" if is_demo else "production"], count)
        yield visits

        messages = CounterMetricFamily("kiosk_fleet_messages_stored",
                                       "Messages stored, by kind", labels=["kind"])
        for kind, model in (("visit", Visit), ("period", db.PeriodCount),
                            ("reply", db.Reply)):
            messages.add_metric([kind], model.select().count())
        yield messages
        malformed = CounterMetricFamily("kiosk_fleet_messages_malformed",
                                        "Messages the collectors refused as malformed, by "
                                        "reason", labels=["reason"])
        for reason, count in sorted(db.malformed().items()):
            malformed.add_metric([reason], count)
        yield malformed

        Event = db.AlarmEvent
        opened = dict.fromkeys(alarms.KINDS, 0)
        for kind, count in (Event.select(Event.kind, fn.COUNT(Event.id))
                            .where(Event.cleared.is_null()).group_by(Event.kind).tuples()):
            opened[kind] = count
        open_alarms = GaugeMetricFamily("kiosk_fleet_alarms_open", "Alarms open now, by kind",
                                        labels=["kind"])
        for kind, count in opened.items():
            open_alarms.add_metric([kind], count)
        yield open_alarms
        raised = CounterMetricFamily("kiosk_fleet_alarms_raised", "Alarms raised, by kind",
                                     labels=["kind"])
        for kind, count in (Event.select(Event.kind, fn.COUNT(Event.id)).group_by(Event.kind)
                            .tuples()):
            raised.add_metric([kind], count)
        yield raised

        newest = Kiosk.select(fn.MAX(Kiosk.last_seen)).scalar()
        lag = GaugeMetricFamily("kiosk_fleet_ingest_lag_seconds",
                                "Seconds since the newest message from any kiosk was stored")
        if newest:
            seen = dt.datetime.strptime(newest, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
            lag.add_metric([], max(0.0, (self.clock() - seen).total_seconds()))
        yield lag
        oldest = GaugeMetricFamily("kiosk_fleet_outbox_oldest_seconds",
                                   "Age of the oldest message waiting in any kiosk's outbox, "
                                   "from the latest health reports")
        value = Kiosk.select(fn.MAX(Kiosk.outbox_oldest_s)).scalar()
        if value is not None:
            oldest.add_metric([], value)
        yield oldest


def registry_for(fleet_db):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(fleet_db))
    return registry


@blueprint.get("/metrics")
def metrics():
    return Response(generate_latest(console().metrics), mimetype=CONTENT_TYPE_LATEST)
