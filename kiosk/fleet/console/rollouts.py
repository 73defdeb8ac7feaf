"""The rollouts page: every staged rollout with its totals per update step, and one rollout's
kiosks with their step and the reason of a rollback (:mod:`kiosk.fleet.rollouts`, which the
``kiosk-fleet rollout`` verb shares). An operator pauses or resumes one here, publishing as the
ops account; viewers see no button, and their POST is refused (403).

The console reads the store through its read-only connection; a pause or resume is the one
write it makes, through a connection of its own opened for that action (the collector's
database role, or a role allowed to update the two rollout tables).
"""

import logging

from flask import Blueprint, abort, g, redirect, render_template, url_for

from kiosk.errors import TelemetryError
from kiosk.fleet import rollouts
from kiosk.fleet.console.app import console
from kiosk.fleet.db import open_database

log = logging.getLogger(__name__)
blueprint = Blueprint("rollouts", __name__)


@blueprint.get("/rollouts")
def rollouts_page():
    db = console().db
    shown = [rollouts.progress(db, row.rollout_id) for row in db.rollouts()]
    return render_template("rollouts.html", shown=shown)


def _one(rollout_id, error=None, code=200):
    try:
        shown = rollouts.progress(console().db, rollout_id)
    except TelemetryError:
        abort(404)
    return render_template("rollout.html", p=shown, error=error), code


@blueprint.get("/rollouts/<rollout_id>")
def rollout_page(rollout_id):
    return _one(rollout_id)


def _act(rollout_id, action):
    if not g.user.is_operator:
        log.warning("console: viewer %s tried to %s a rollout", g.user.name, action)
        abort(403)
    state = console()
    try:
        if state.settings.broker is None:
            raise TelemetryError("this console was started without a broker (--broker-host)")
        broker = state.settings.broker
        send = rollouts.sender(broker.host, broker.port, broker.username, broker.password,
                               tls=broker.tls)
        writer = open_database(state.settings.db)
        try:
            if action == "pause":
                kiosks = rollouts.pause(writer, send, rollout_id,
                                        reason=f"paused by {g.user.name}")
            else:
                kiosks = rollouts.resume(writer, send, rollout_id)
        finally:
            writer.close()
    except TelemetryError as exc:
        return _one(rollout_id, str(exc), 400)
    log.info("console: %s %sd rollout %s (%d kiosks)", g.user.name, action, rollout_id,
             len(kiosks))
    return redirect(url_for("rollouts.rollout_page", rollout_id=rollout_id), 303)


@blueprint.post("/rollouts/<rollout_id>/pause")
def pause(rollout_id):
    return _act(rollout_id, "pause")


@blueprint.post("/rollouts/<rollout_id>/resume")
def resume(rollout_id):
    return _act(rollout_id, "resume")
