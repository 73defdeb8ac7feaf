"""The console's Flask application: settings, the request's user and language, login and
logout, CSRF on every POST, security headers, and the pages' blueprints.

Sessions are Flask's signed cookies (Secure, HttpOnly, SameSite=Strict), holding the user's
name, their password's fingerprint, the CSRF token and nothing else. The console sits behind
the agency's TLS reverse proxy (docs/ops.md); ``proxy_hops`` trusts that many
``X-Forwarded-*`` hops so the brake on failed logins sees the citizen-free client address.
"""

import datetime as dt
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

from kiosk.fleet import registry as registry_module
from kiosk.fleet import statistics
from kiosk.fleet.console import auth, i18n
from kiosk.fleet.db import open_database

log = logging.getLogger(__name__)

SESSION_HOURS = 8
#: How long a computed statistics publication is served again (late visits show after it).
STATISTICS_TTL_S = 60.0
#: No script, style or image from anywhere but the console itself (issue 13: no CDN).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                           "script-src 'self'; frame-ancestors 'none'; form-action 'self'; "
                           "base-uri 'none'")
#: Endpoints anyone may reach; every other page needs a logged-in user.
PUBLIC = frozenset({"login", "language", "static", "metrics.metrics"})
#: Endpoints that neither read nor start a session (a scraper keeps no cookie).
SESSIONLESS = frozenset({"static", "metrics.metrics"})


@dataclass(frozen=True)
class Broker:
    """Where commands go, as the ops account (:func:`kiosk.fleet.command.publish`)."""

    host: str
    port: int
    username: str
    password: str | None
    ca_file: Path | None = None

    @property
    def tls(self):
        return {"ca_certs": str(self.ca_file)} if self.ca_file else None


@dataclass(frozen=True)
class Settings:
    db: str
    users: Path
    broker: Broker | None = None
    secret_key: str | None = None  # None: a new one per start (everyone logs in again)
    proxy_hops: int = 0
    command_timeout_s: float = 30.0
    tiles: str | None = None  # the map's tile URL template; None: a plain background


def create_app(settings):
    """The console over the store ``settings.db``; the store is opened (and migrated) once."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        SESSION_COOKIE_NAME="console",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=SESSION_HOURS),
        MAX_CONTENT_LENGTH=256 * 1024,
    )
    if settings.proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_hops,
                                x_proto=settings.proxy_hops, x_host=settings.proxy_hops)
    users = auth.Users(settings.users)  # a bad users file is named before the store is opened
    fleet_db = open_database(settings.db, read_only=True)  # it reads; the collector writes
    app.extensions["console"] = Console(settings, fleet_db, users)

    from kiosk.fleet.console import (  # noqa: PLC0415
        charts,
        commands,
        fleet,
        metrics,
        rollouts,
        stats,
    )
    from kiosk.fleet.console import map as points_map  # noqa: PLC0415 (cycle)

    origin = points_map.tile_origin(settings.tiles)
    app.config.update(TILES=settings.tiles, CSP=CONTENT_SECURITY_POLICY if not origin else
                      CONTENT_SECURITY_POLICY.replace("img-src 'self' data:",
                                                      f"img-src 'self' data: {origin}"))

    app.extensions["console"].metrics = metrics.registry_for(fleet_db)
    for blueprint in (fleet.blueprint, stats.blueprint, commands.blueprint, metrics.blueprint,
                      points_map.blueprint, charts.blueprint, rollouts.blueprint):
        app.register_blueprint(blueprint)
    app.before_request(_before)
    app.after_request(_headers)
    app.context_processor(_template_names)
    app.add_url_rule("/login", "login", _login, methods=("GET", "POST"))
    app.add_url_rule("/logout", "logout", _logout, methods=("POST",))
    app.add_url_rule("/language/<code>", "language", _language)
    app.add_url_rule("/", "home", lambda: redirect(url_for("fleet.fleet_page")))
    for code in (400, 403, 404):
        app.register_error_handler(code, _error)
    return app


class Console:
    """What every request shares: settings, the store and its registry, the users, the brake,
    the commands sent since start, and the statistics computed in the last
    :data:`STATISTICS_TTL_S` (a drill-down, going back, or a CSV of the page just seen reads
    a year of visits once, and the CSV holds the figures the page showed)."""

    def __init__(self, settings, fleet_db, users, clock=time.monotonic):
        self.settings, self.db, self.users = settings, fleet_db, users
        self.registry = registry_module.Registry(fleet_db.database)
        self.brake = auth.LoginBrake()
        self.sent = {}  # correlation id -> commands.Sent, newest last
        self.metrics = None  # the /metrics registry (kiosk.fleet.console.metrics)
        self.clock = clock
        self._statistics, self._statistics_lock = {}, threading.Lock()

    def statistics(self, level, start, end, tables=statistics.TABLES):
        """:func:`kiosk.fleet.statistics.compute` of ``level`` over ``[start, end)``."""
        key, now = (level, start, end, tuple(tables)), self.clock()
        with self._statistics_lock:
            for old in [k for k, (at, _) in self._statistics.items()
                        if now - at >= STATISTICS_TTL_S]:
                del self._statistics[old]
            if key in self._statistics:
                return self._statistics[key][1]
        computed = statistics.compute(self.db, self.registry, start, end, level,
                                      tables=tables)
        with self._statistics_lock:
            self._statistics[key] = (now, computed)
        return computed


def console():
    from flask import current_app  # noqa: PLC0415 (only inside a request)

    return current_app.extensions["console"]


def t(key):
    return i18n.translate(key, g.lang)


def _template_names():
    return {"t": t, "measure": lambda name: i18n.measure(name, g.lang), "lang": g.lang,
            "age": lambda text: i18n.age(text, g.lang),
            "user": g.user, "csrf_token": session.get("csrf", "")}


def _before():
    g.lang = request.cookies.get("lang") if request.cookies.get("lang") in i18n.LANGUAGES \
        else i18n.DEFAULT
    if request.endpoint in SESSIONLESS:
        g.user = None
        return None
    if "csrf" not in session:
        session["csrf"] = auth.new_csrf_token()
    g.user = None
    name = session.get("user")
    if name:
        user = console().users.get(name)
        if user is not None and secrets.compare_digest(user.fingerprint, session.get("fp", "")):
            g.user = user
        else:
            session.clear()
            session["csrf"] = auth.new_csrf_token()
    if request.method == "POST" and not auth.same_token(request.form.get("csrf"),
                                                       session.get("csrf")):
        abort(400, t("error.csrf"))
    if g.user is None and request.endpoint not in PUBLIC:
        return redirect(url_for("login", next=request.full_path.rstrip("?")))
    return None


def _headers(response):
    response.headers["Content-Security-Policy"] = current_app.config["CSP"]
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def _safe_next(target):
    """Only a path on this site: never an open redirect."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not (target or "").startswith("/") or \
            target.startswith("//") or "\\" in target:
        return url_for("fleet.fleet_page")
    return target


def _login():
    state = console()
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip().lower()
        address = f"{request.remote_addr} {name}"
        if state.brake.is_braked(address):
            error, code = t("login.braked"), 429
        else:
            user = state.users.check(name, request.form.get("password", ""))
            if user is not None:
                session.clear()
                session.permanent = True
                session.update(user=user.name, fp=user.fingerprint,
                               csrf=auth.new_csrf_token())
                log.info("console: %s logged in (%s)", user.name, user.role)
                return redirect(_safe_next(request.args.get("next")))
            state.brake.failed(address)
            error, code = t("login.failed"), 401
        return render_template("login.html", error=error), code
    return render_template("login.html", error=None)


def _logout():
    session.clear()
    return redirect(url_for("login"))


def _language(code):
    if code not in i18n.LANGUAGES:
        abort(404)
    response = redirect(_safe_next(request.args.get("next")))
    response.set_cookie("lang", code, max_age=365 * 86400, secure=True, samesite="Lax")
    return response


def _error(exc):
    description = exc.description if isinstance(exc.description, str) else ""
    texts = {403: t("error.forbidden"), 404: t("error.not_found")}
    return render_template("error.html", code=exc.code,
                           message=texts.get(exc.code, description)), exc.code
