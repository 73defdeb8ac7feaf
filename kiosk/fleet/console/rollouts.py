"""The rollouts page: every staged rollout with its totals per update step, and one rollout's
kiosks with their step and the reason of a rollback (:mod:`kiosk.fleet.rollouts`, which the
``kiosk-fleet rollout`` verb shares). An operator starts a rollout here, widens, pauses or
resumes one, publishing as the ops account, through the verb's own functions: the same checks
apply, and input they refuse (:class:`kiosk.errors.RolloutRefused`) comes back on the page
with its field marked, nothing recorded nor sent. Pausing a rollout paused already does its
withdrawal again; the page's "Withdraw again" is refused if another operator resumed it
meanwhile. Viewers see no form, and their POST is refused (403).

The console reads the store through its read-only connection; these actions are the writes it
makes, through a connection of its own opened for each (the collector's database role, or a
role allowed to insert into and update the two rollout tables).
"""

import logging

from flask import Blueprint, abort, g, redirect, render_template, request, url_for

from kiosk.errors import RolloutRefused, TelemetryError
from kiosk.fleet import rollout, rollouts
from kiosk.fleet.console.app import console
from kiosk.fleet.console.fleet import filters_from
from kiosk.fleet.db import open_database

log = logging.getLogger(__name__)
blueprint = Blueprint("rollouts", __name__)
#: What the page says after an action (``?done=``), with the number of kiosks (``?n=``).
DONE = ("started", "widened", "paused", "withdrawn_again", "resumed")


def _list(error=None, field=None, code=200):
    db = console().db
    shown = [rollouts.progress(db, row.rollout_id) for row in db.rollouts()]
    return render_template("rollouts.html", shown=shown, error=error, field=field,
                           form=request.form,
                           default_threshold=rollout.DEFAULT_THRESHOLD_PERCENT), code


@blueprint.get("/rollouts")
def rollouts_page():
    return _list()


def _one(rollout_id, error=None, field=None, code=200):
    try:
        shown = rollouts.progress(console().db, rollout_id)
    except TelemetryError:
        abort(404)
    done = request.args.get("done")
    count = request.args.get("n", "")
    said = (done, int(count)) if done in DONE and count.isdigit() else None
    return render_template("rollout.html", p=shown, error=error, field=field, said=said,
                           form=request.form), code


@blueprint.get("/rollouts/<rollout_id>")
def rollout_page(rollout_id):
    return _one(rollout_id)


def _operator(action):
    if not g.user.is_operator:
        log.warning("console: viewer %s tried to %s a rollout", g.user.name, action)
        abort(403)


def _acting(act):
    """Run ``act(writer, send)`` with a store connection of its own and the ops sender."""
    state = console()
    if state.settings.broker is None:
        raise TelemetryError("this console was started without a broker (--broker-host)")
    broker = state.settings.broker
    send = rollouts.sender(broker.host, broker.port, broker.username, broker.password,
                           tls=broker.tls)
    writer = open_database(state.settings.db)
    try:
        return act(writer, send)
    finally:
        writer.close()


def _done(rollout_id, said, count):
    return redirect(url_for("rollouts.rollout_page", rollout_id=rollout_id, done=said,
                            n=count), 303)


@blueprint.post("/rollouts")
def start():
    _operator("start")
    form = request.form
    filters, _ = filters_from(form)
    threshold = (form.get("threshold") or "").strip() or rollout.DEFAULT_THRESHOLD_PERCENT
    try:
        wanted, targets = _acting(lambda writer, send: rollouts.start(
            writer, send, version=(form.get("version") or "").strip(),
            url=(form.get("url") or "").strip(), sha256=(form.get("sha256") or "").strip(),
            percent=(form.get("percent") or "").strip(), filters=filters,
            threshold_percent=threshold, created_by=g.user.name))
    except RolloutRefused as exc:
        return _list(str(exc), exc.field, 400)
    except TelemetryError as exc:
        return _list(str(exc), None, 400)
    log.info("console: %s started rollout %s of %s (%d kiosks)", g.user.name,
             wanted.rollout_id, wanted.version, len(targets))
    return _done(wanted.rollout_id, "started", len(targets))


@blueprint.post("/rollouts/<rollout_id>/widen")
def widen(rollout_id):
    _operator("widen")
    percent = (request.form.get("percent") or "").strip()
    try:
        added = _acting(lambda writer, send: rollouts.widen(writer, send, rollout_id, percent))
    except RolloutRefused as exc:
        return _one(rollout_id, str(exc), exc.field, 400)
    except TelemetryError as exc:
        return _one(rollout_id, str(exc), None, 400)
    log.info("console: %s widened rollout %s to %s %% (%d more kiosks)", g.user.name,
             rollout_id, percent, len(added))
    return _done(rollout_id, "widened", len(added))


@blueprint.post("/rollouts/<rollout_id>/pause")
def pause(rollout_id):
    _operator("pause")
    try:
        # "Withdraw again" is meant for the paused rollout the page showed: refused if another
        # operator resumed it meanwhile, rather than taking back the commands just sent.
        done = _acting(lambda writer, send: rollouts.pause(
            writer, send, rollout_id, reason=f"paused by {g.user.name}",
            only_again=request.form.get("again") == "1"))
    except TelemetryError as exc:
        return _one(rollout_id, str(exc), None, 400)
    said = "withdrawn_again" if done.is_again else "paused"
    log.info("console: %s %s rollout %s (%d kiosks)", g.user.name,
             "withdrew again the command of paused" if done.is_again else "paused", rollout_id,
             len(done.kiosk_ids))
    return _done(rollout_id, said, len(done.kiosk_ids))


@blueprint.post("/rollouts/<rollout_id>/resume")
def resume(rollout_id):
    _operator("resume")
    try:
        again = _acting(lambda writer, send: rollouts.resume(writer, send, rollout_id))
    except TelemetryError as exc:
        return _one(rollout_id, str(exc), None, 400)
    log.info("console: %s resumed rollout %s (%d kiosks)", g.user.name, rollout_id,
             len(again))
    return _done(rollout_id, "resumed", len(again))
