"""The commands page: an operator sends ping, rebirth, replay or config to one kiosk or to the
kiosks a filter selects, through :mod:`kiosk.fleet.command` (as the ops account), then watches
the replies the collector stores. Viewers see no form, and their POST is refused (403)."""

import logging
from dataclasses import dataclass

from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from kiosk.errors import TelemetryError
from kiosk.fleet import command
from kiosk.fleet.console.app import console
from kiosk.fleet.console.fleet import filters_from, fleet_rows
from kiosk.fleet.db import utc_now
from kiosk.telemetry import topics

log = logging.getLogger(__name__)
blueprint = Blueprint("commands", __name__)
RECENT = 20


@dataclass(frozen=True)
class Sent:
    correlation_id: str
    name: str
    kiosk_ids: tuple
    user: str
    sent: str  # the console's clock


def _targets(form):
    """The kiosk ids the form names: one kiosk, or every kiosk its filter selects."""
    if form.get("target") == "filter":
        filters, alarm = filters_from(form)
        return tuple(row.kiosk.kiosk_id for row in fleet_rows(console().db, filters, alarm))
    try:
        return (topics.check_kiosk_id(form.get("kiosk_id", "").strip()),)
    except ValueError as exc:
        raise TelemetryError(str(exc)) from None


def _page(error=None, code=200):
    sent = list(reversed(console().sent.values()))[:RECENT]
    return render_template("commands.html", commands=command.VERBS, sent=sent, error=error,
                           form=request.form), code


@blueprint.get("/commands")
def commands_page():
    return _page()


@blueprint.post("/commands")
def send():
    if not g.user.is_operator:
        log.warning("console: viewer %s tried to send a command", g.user.name)
        abort(403)
    state = console()
    name = request.form.get("command", "")
    try:
        if name not in command.VERBS:
            raise TelemetryError(f"unknown command {name!r}")
        if state.settings.broker is None:
            raise TelemetryError("this console was started without a broker (--broker-host)")
        kiosk_ids = _targets(request.form)
        if not kiosk_ids:
            raise TelemetryError("no kiosk matches")
        correlation_id = command.new_correlation_id()
        config_text = (request.form.get("config") or "") if name == "config" else None
        payload = command.payload_for(name, correlation_id, config_text=config_text,
                                      event_ids=request.form.get("event_ids", "").split())
        broker = state.settings.broker
        command.publish(broker.host, broker.port, broker.username, broker.password,
                        [(topics.cmd_topic(kiosk_id, name), payload, name == "config")
                         for kiosk_id in kiosk_ids], tls=broker.tls)
    except TelemetryError as exc:
        return _page(str(exc), 400)
    state.sent[correlation_id] = Sent(correlation_id, name, kiosk_ids, g.user.name, utc_now())
    log.info("console: %s sent %s to %d kiosk(s) as %s", g.user.name, name, len(kiosk_ids),
             correlation_id)
    return redirect(url_for("commands.sent_page", correlation_id=correlation_id), 303)


def _replies(correlation_id):
    sent = console().sent.get(correlation_id)
    stored = {r.kiosk_id: r for r in console().db.replies(correlation_id)}
    if sent is None and not stored:
        abort(404)
    kiosk_ids = sent.kiosk_ids if sent else tuple(sorted(stored))
    return {"sent": sent, "correlation_id": correlation_id,
            "rows": [(kiosk_id, stored.get(kiosk_id)) for kiosk_id in kiosk_ids],
            "waiting": sum(kiosk_id not in stored for kiosk_id in kiosk_ids)}


@blueprint.get("/commands/<correlation_id>")
def sent_page(correlation_id):
    return render_template("command_sent.html", **_replies(correlation_id))


@blueprint.get("/commands/<correlation_id>/replies")
def sent_replies(correlation_id):
    """The replies table alone, for the live refresh."""
    return render_template("command_replies.html", **_replies(correlation_id))

