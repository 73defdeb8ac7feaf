"""The console through Flask's test client: access (login, roles, sessions, the brake), CSRF,
the language switch, the fleet and kiosk pages, the statistics drill-down and CSV against the
statistics core, /metrics, and the users verb."""

import argparse
import datetime as dt
import io
import json
import os
import re
from html import unescape

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk import clock
from kiosk import visit as schema
from kiosk.errors import ConfigError, TelemetryError
from kiosk.fleet import alarms, registry, statistics
from kiosk.fleet.console import auth, commands, i18n, serve, users
from kiosk.fleet.console.app import Settings, create_app
from kiosk.fleet.console.stats import date_range
from kiosk.fleet.db import open_database, utc_text
from kiosk.period import BANGKOK
from kiosk.telemetry import topics
from tests.fixtures.console import DAY, PASSWORDS
from tests.fleet.test_statistics import RECEIVED, visits

START = dt.datetime(2026, 12, 1, tzinfo=BANGKOK)
END = dt.datetime(2026, 12, 2, tzinfo=BANGKOK)
RANGE = f"from={DAY}&to={DAY}"


def cells(html, table_id):
    """``[{column: text}]`` of a page's table: a key column's value (``data-value``, the
    core's key) and each measure's text as shown."""
    body = re.search(rf'<table[^>]*id="{re.escape(table_id)}".*?<tbody>(.*?)</tbody>', html,
                     re.S).group(1)
    rows = []
    for row in re.findall(r"<tr.*?</tr>", body, re.S):
        found = {name: unescape(value) for name, value in
                 re.findall(r'<td data-key="([^"]+)" data-value="([^"]*)"', row)}
        for _, name, value in re.findall(
                r'<(td|span)[^>]* data-measure="([^"]+)"[^>]*>(.*?)</\1>', row, re.S):
            found[name] = unescape(re.sub(r"<[^>]+>", "", value).strip())
        rows.append(found)
    return rows


# --- access ------------------------------------------------------------------------------

def test_console_every_page_needs_a_login(browser):
    anonymous = browser()
    for path in ("/fleet", "/stats", "/commands", "/kiosk/k1", "/stats/national/visits.csv"):
        response = anonymous.get(path)
        assert response.status_code == 302 and response.location.startswith("/login?next=")


def test_console_login_sets_a_secure_httponly_strict_cookie_and_returns_to_next(browser):
    made = browser()
    made.get("/login")
    response = made.post("/login?next=/stats", {"name": "vera",
                                                "password": PASSWORDS["vera"]})
    assert response.status_code == 302 and response.location == "/stats"
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert made.get("/stats").status_code == 200


def test_console_login_never_redirects_off_site(browser):
    made = browser()
    made.get("/login")
    response = made.post("/login?next=//evil.example/x", {"name": "vera",
                                                           "password": PASSWORDS["vera"]})
    assert response.location == "/fleet"
    made.post("/logout")
    made.get("/login")
    response = made.post("/login?next=/\\evil.example", {"name": "vera",
                                                        "password": PASSWORDS["vera"]})
    assert response.location == "/fleet"


def test_console_wrong_password_and_unknown_user_are_refused_alike(browser):
    made = browser()
    made.get("/login")
    wrong = made.post("/login", {"name": "vera", "password": "not-her-password"})
    nobody = made.post("/login", {"name": "nobody", "password": "not-her-password"})
    assert wrong.status_code == nobody.status_code == 401
    assert i18n.translate("login.failed", "th") in wrong.text
    assert made.get("/fleet").status_code == 302


def test_console_failed_logins_are_braked_even_for_the_right_password(browser):
    made = browser()
    made.get("/login")
    for _ in range(auth.FAIL_LIMIT):
        assert made.post("/login", {"name": "vera", "password": "wrong-wrong"}).status_code == 401
    braked = made.post("/login", {"name": "vera", "password": PASSWORDS["vera"]})
    assert braked.status_code == 429
    # Another user from the same address is not locked out by vera's attacker.
    assert made.post("/login", {"name": "otto", "password": PASSWORDS["otto"]}).status_code \
        == 302


def test_console_brake_lets_go_after_its_window():
    now = [0.0]
    brake = auth.LoginBrake(limit=2, window_s=60, clock=lambda: now[0])
    brake.failed("a")
    brake.failed("a")
    assert brake.is_braked("a") and not brake.is_braked("b")
    now[0] = 60.0
    assert not brake.is_braked("a")


def test_console_post_without_its_csrf_token_is_refused(browser):
    made = browser()
    made.get("/login")
    refused = made.post("/login", {"name": "otto", "password": PASSWORDS["otto"]}, csrf=False)
    assert refused.status_code == 400
    forged = made.post("/login", {"name": "otto", "password": PASSWORDS["otto"],
                                  "csrf": "guessed"}, csrf=False)
    assert forged.status_code == 400
    operator = browser("otto")
    assert operator.post("/commands", {"target": "kiosk", "kiosk_id": "k1",
                                       "command": "ping"}, csrf=False).status_code == 400
    assert operator.post("/logout", csrf=False).status_code == 400
    assert operator.get("/fleet").status_code == 200  # still logged in


def test_console_viewer_sees_no_command_form_and_a_forged_post_is_forbidden(browser):
    viewer = browser("vera")
    page = viewer.get("/commands")
    assert page.status_code == 200 and "<form class=\"command\"" not in page.text
    assert 'id="viewer-notice"' in page.text
    forged = viewer.post("/commands", {"target": "kiosk", "kiosk_id": "k1", "command": "ping"})
    assert forged.status_code == 403
    assert 'id="command-form"' in browser("otto").get("/commands").text


def test_console_operator_send_without_a_broker_says_why(browser):
    operator = browser("otto")
    response = operator.post("/commands", {"target": "kiosk", "kiosk_id": "k1",
                                           "command": "ping"})
    assert response.status_code == 400 and "--broker-host" in response.text
    bad = operator.post("/commands", {"target": "kiosk", "kiosk_id": "a/b", "command": "ping"})
    assert bad.status_code == 400


def test_console_command_targets_one_kiosk_or_the_filtered_set(console_app):
    with console_app.test_request_context():
        assert commands._targets({"target": "kiosk", "kiosk_id": "k3"}) == ("k3",)
        assert commands._targets({"target": "filter", "ministry": "กระทรวงมหาดไทย"}) == ("k1",)
        assert commands._targets({"target": "filter", "alarm": "silent"}) == ("k2",)
        assert commands._targets({"target": "filter"}) == ("k1", "k2", "k3")
        with pytest.raises(TelemetryError, match="kiosk id"):
            commands._targets({"target": "kiosk", "kiosk_id": "+"})


def test_console_changed_password_or_removed_user_ends_the_session(browser, users_file):
    viewer = browser("vera")
    found = auth.read_users(users_file)
    found["vera"] = auth.User("vera", "viewer", auth.hash_password("a-new-password"))
    auth.write_users(users_file, found)
    assert viewer.get("/fleet").status_code == 302
    operator = browser("otto")
    del found["otto"]
    auth.write_users(users_file, found)
    assert operator.get("/fleet").status_code == 302


def test_console_logout_ends_the_session(browser):
    viewer = browser("vera")
    assert viewer.post("/logout").status_code == 302
    assert viewer.get("/fleet").status_code == 302


def test_console_pages_send_a_strict_content_security_policy(browser):
    response = browser("vera").get("/fleet")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["Cache-Control"] == "no-store"


# --- language ----------------------------------------------------------------------------

def test_console_catalogue_has_every_key_in_both_languages():
    for key, texts in i18n.CATALOGUE.items():
        assert len(texts) == len(i18n.LANGUAGES) and all(texts), key
    assert i18n.translate("nav.fleet", "th") != i18n.translate("nav.fleet", "en")
    assert i18n.measure("abandoned_share_rating", "en") == "share left at rating"
    assert i18n.measure("not_a_measure", "th") == "not a measure"
    assert i18n.age("5m ago", "th") == "5 นาทีที่แล้ว" and i18n.age("12d ago", "en") == "12 d ago"
    assert i18n.age("never", "th") == "ไม่เคย"
    steps = {f"m.abandoned_{step}" for step in i18n.schema.STEPS}
    assert steps <= i18n.CATALOGUE.keys()


def test_console_speaks_thai_first_and_english_one_click_away(browser):
    viewer = browser("vera")
    thai = viewer.get("/fleet")
    assert '<html lang="th">' in thai.text and i18n.translate("fleet.title", "th") in thai.text
    switch = re.search(r'id="language" href="([^"]+)"', thai.text).group(1).replace("&amp;",
                                                                                    "&")
    back = viewer.get(switch)
    assert back.status_code == 302 and back.location == "/fleet"
    english = viewer.get("/fleet")
    assert '<html lang="en">' in english.text
    assert i18n.translate("fleet.title", "en") in english.text
    assert i18n.translate("fleet.title", "th") not in english.text


# --- fleet ---------------------------------------------------------------------------------

def test_console_fleet_lists_every_kiosk_with_state_and_open_alarms(browser):
    page = browser("vera").get("/fleet").text
    rows = dict(re.findall(r'<tr class="state-(\w+)[^"]*" data-kiosk="(\w+)"', page))
    assert {kiosk: state for state, kiosk in rows.items()} == {
        "k1": "online", "k2": "lost", "k3": "offline"}
    k2 = re.search(r'data-kiosk="k2".*?</tr>', page, re.S).group(0)
    assert '<span class="alarm">silent</span>' in k2
    k1 = re.search(r'data-kiosk="k1".*?</tr>', page, re.S).group(0)
    assert "disk_low" not in k1  # cleared: history, not open
    # The province is the registry's (the pin says "kiosk's own"), in the page's language.
    assert "เชียงใหม่" in k2 and "kiosk's own" not in k2
    assert "Chiang Mai" in re.search(r'data-kiosk="k2".*?</tr>', browser("vera").get(
        "/language/en?next=/fleet", follow_redirects=True).text, re.S).group(0)


@pytest.mark.parametrize(("query", "expected"), [
    ("ministry=กระทรวงคมนาคม", {"k2"}),
    ("ministry=กระทรวงมหาดไทย&department=กรมการปกครอง", {"k1"}),
    ("province=50", {"k2"}),  # Chiang Mai's DOPA code
    ("province=Chiang+Mai", {"k2"}),
    ("alarm=silent", {"k2"}),
    ("alarm=disk_low", set()),
    ("alarm=not-a-kind", {"k1", "k2", "k3"}),
])
def test_console_fleet_filters_as_the_status_verb_does(browser, query, expected):
    viewer = browser("vera")
    for path in ("/fleet", "/fleet/table"):
        page = viewer.get(f"{path}?{query}").text
        assert set(re.findall(r'data-kiosk="(\w+)"', page)) == expected, path


def test_console_kiosk_page_shows_its_alarm_history_and_replies(browser):
    viewer = browser("vera")
    page = viewer.get("/kiosk/k1").text
    history = re.search(r'id="alarm-history".*?</table>', page, re.S).group(0)
    assert "disk_low" in history and "2026-11-30T08:00:00.000Z" in history
    assert "ops-abcdefghijklmnop" in page and "{&#34;version&#34;: 3}" in page
    # Where it stands is the registry's word, not its pin's ("kiosk's own" in the fixture).
    assert "กรุงเทพมหานคร" in page and "กรมการปกครอง" in page and "kiosk's own" not in page
    assert viewer.get("/kiosk/nobody").status_code == 404
    assert viewer.get("/kiosk/ops").status_code == 404  # a reserved name is no kiosk


def certificate_shown(viewer, kiosk_id):
    """The certificate line of a kiosk's page."""
    page = viewer.get(f"/kiosk/{kiosk_id}").text
    return re.search(r'<dd id="certificate">(.*?)</dd>', page, re.S).group(1)


def test_console_kiosk_page_shows_the_newest_certificate_and_its_expiry(browser,
                                                                        console_store):
    now = dt.datetime.now(dt.UTC)
    db = open_database(console_store)
    try:
        db.add_certificate("k1", serial="5EC0ED", not_before=now - dt.timedelta(days=400),
                           not_after=now - dt.timedelta(days=35), issued=now)
        db.add_certificate("k1", serial="C0FFEE", not_before=now,
                           not_after=now + dt.timedelta(days=40, hours=1), issued=now)
        db.add_certificate("k3", serial="DEAD", not_before=now - dt.timedelta(days=400),
                           not_after=now - dt.timedelta(days=35), issued=now)
    finally:
        db.close()
    viewer = browser("vera")

    def certificate(kiosk_id):
        return certificate_shown(viewer, kiosk_id)

    k1 = certificate("k1")
    expiry = utc_text(now + dt.timedelta(days=40, hours=1))
    assert "<code>c0ffee</code>" in k1 and "5ec0ed" not in k1  # the newest only
    assert f"หมดอายุ {expiry} (อีก 40 วัน)" in k1
    expired = utc_text(now - dt.timedelta(days=35))
    assert f"หมดอายุแล้วเมื่อ {expired}" in certificate("k3")
    assert certificate("k2") == i18n.translate("kiosk.cert_none", "th")
    viewer.get("/language/en?next=/fleet")
    assert f"expires {expiry} (in 40 days)" in certificate("k1")


def test_console_kiosk_page_shows_the_expiry_the_kiosk_reports_when_it_is_another(
        browser, console_store):
    """A renewal recorded as signed but not yet installed: the page shows both expiries, the
    kiosk's as the one in use; a report that matches the record adds nothing."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    recorded, in_use = now + dt.timedelta(days=365, hours=1), now + dt.timedelta(days=9, hours=1)
    db = open_database(console_store)
    try:
        for kiosk_id, not_after in (("k1", recorded), ("k3", in_use)):
            db.add_certificate(kiosk_id, serial="C0FFEE", not_before=now, not_after=not_after,
                               issued=now)

        def reports(kiosk_id, cert_expires):
            db.apply_health([topics.parse_kiosk_message(
                topics.kiosk_topic(kiosk_id, "health"), topics.health_payload(
                    mode="production", uptime_s=60, load_1m=0.5, disk_free_mb=900,
                    mem_free_mb=200, outbox_depth=0, outbox_oldest_s=None, dead_letters=0,
                    reader="ready", card_reads_ok=None, config_version=3, version="0.3.0",
                    stamp=clock.stamp(now, True, 60.0),
                    cert_expires=f"{cert_expires:%Y-%m-%dT%H:%M:%SZ}"))], utc_text(now))

        reports("k1", in_use)
        reports("k3", in_use)
    finally:
        db.close()
    viewer = browser("vera")

    def certificate(kiosk_id):
        return certificate_shown(viewer, kiosk_id)

    shown = f"{in_use:%Y-%m-%dT%H:%M:%SZ}"
    assert f"<code>c0ffee</code> · หมดอายุ {utc_text(recorded)} (อีก 365 วัน)" in certificate("k1")
    assert (f"ตู้แจ้งว่าใช้ใบที่ หมดอายุ {shown} (อีก 9 วัน): ต่ออายุแล้ว ยังไม่ได้ติดตั้ง"
            in certificate("k1"))
    assert "cert-in-use" not in certificate("k3")  # it uses the newest one recorded
    viewer.get("/language/en?next=/fleet")
    assert (f"the kiosk reports the one in use expires {shown} (in 9 days): renewed, not yet "
            "installed") in certificate("k1")


def test_console_shows_a_retired_kiosk_and_the_fleets_crl_alarm(browser, console_store):
    now = dt.datetime.now(dt.UTC)
    db = open_database(console_store)
    try:
        db.retire("k1", now, "revoked: stolen")
        db.CaCrl.create(number=1, this_update=utc_text(now - dt.timedelta(days=29)),
                        next_update=utc_text(now + dt.timedelta(days=1)), revoked_count=1)
        with db.database.atomic():
            db.update_alarms(now, alarms.DEFAULT_THRESHOLDS)
    finally:
        db.close()
    viewer = browser("vera")
    table = viewer.get("/fleet/table").text
    day = utc_text(now)[:10]
    row = re.search(r'<tr[^>]*data-kiosk="k1".*?</tr>', table, re.S).group(0)
    assert f"ปลดระวางแล้ว {day}" in row
    assert "ปลดระวางแล้ว" not in re.search(r'<tr[^>]*data-kiosk="k2".*?</tr>', table,
                                            re.S).group(0)
    banner = re.search(r'<div class="fleet-alarms".*?</div>', table, re.S).group(0)
    assert "crl_expiring" in banner and "kiosk-fleet crl refresh" in banner
    assert "crl_expiring" not in viewer.get("/fleet").text.split('id="fleet-table"')[0]
    assert re.search(r'<span class="tag retired" id="retired">ปลดระวางแล้ว ' + day,
                     viewer.get("/kiosk/k1").text)
    viewer.get("/language/en?next=/fleet")
    assert f"retired {day}" in viewer.get("/kiosk/k1").text


# --- statistics ----------------------------------------------------------------------------

@pytest.fixture
def core(console_store):
    """``compute(level)`` of the statistics core over the known day."""
    db = open_database(console_store)
    yield lambda level: statistics.compute(db, registry.Registry(db.database), START, END, level)
    db.close()


def page_rows(table):
    """The core's table as the page shows it: key columns and every measure as text (a
    withheld share of abandoned visits is left out of its count's cell)."""
    return [{**dict(zip(table.keys, key, strict=True)),
             **{m: "" if v is None else ("✔" if v is True else "–" if v is False else str(v))
                for m, v in row.items()
                if not (v is None and m.startswith("abandoned_share_"))}}
            for key, row in table.rows.items()]


def test_console_national_statistics_are_the_cores_and_contradictions_come_first(browser,
                                                                                  core):
    page = browser("vera").get(f"/stats?{RANGE}").text
    national = core("national")
    for name, table in national.tables.items():
        assert cells(page, f"national-{name}") == page_rows(table), name
    ministries = core("ministry").tables
    assert cells(page, "ministry-visits") == page_rows(ministries["visits"])
    assert page.index('id="contradictions"') < page.index('id="node"')
    contradiction = re.search(r'id="contradictions".*?</section>', page, re.S).group(0)
    assert "dopa-10" in contradiction and "dopa.id_card" in contradiction


def test_console_drills_from_national_to_one_service_at_one_point(browser, core):
    viewer = browser("vera")
    page = viewer.get(f"/stats?{RANGE}").text
    link = re.search(r'<a href="([^"]+)">กระทรวงมหาดไทย</a>', page).group(1)
    page = viewer.get(link.replace("&amp;", "&")).text
    assert cells(page, "ministry-visits") == [r for r in page_rows(core("ministry")
                                                                    .tables["visits"])
                                              if r["ministry"] == "กระทรวงมหาดไทย"]
    link = re.search(r'<a href="([^"]+)">กรมการปกครอง</a>', page).group(1)
    page = viewer.get(link.replace("&amp;", "&")).text
    points = {r["service_point_id"] for r in cells(page, "service_point-visits")}
    assert points == {"dopa-10"}  # dopa-50 had no visit; dlt-50 is another ministry's
    link = re.search(r'<a href="([^"]+)">dopa-10</a>', page).group(1)
    page = viewer.get(link.replace("&amp;", "&")).text
    assert cells(page, "service_point-ratings") == [
        r for r in page_rows(core("service_point").tables["ratings"])
        if r["service_point_id"] == "dopa-10"]
    link = re.search(r'<a href="([^"]+)">dopa.id_card</a>', page).group(1)
    page = viewer.get(link.replace("&amp;", "&")).text
    assert cells(page, "service_point-no_copy") == [
        r for r in page_rows(core("service_point").tables["no_copy"])
        if r["service_point_id"] == "dopa-10" and r["service_id"] == "dopa.id_card"]
    assert cells(page, "service-visits") == [
        r for r in page_rows(core("service").tables["visits"]) if r["service_id"]
        == "dopa.id_card"]


def test_console_labels_every_measure_and_the_other_service_in_both_languages(browser, core):
    """The schema-3 figures (not sure, card left in, answers changed) read in the page's
    language; the "other service" row shows its label, its CSV and data-value keep the id."""
    measures = {m for level in ("national", "service") for table in core(level).tables.values()
                for row in table.rows.values() for m in row}
    assert {"not_sure", "not_sure_share", "card_left_in_share", "undone_share"} <= measures
    assert {f"m.{m}" for m in measures} <= i18n.CATALOGUE.keys()
    viewer = browser("vera")
    for language, label in (("th", "บริการอื่น"), ("en", "Other service")):
        viewer.get(f"/language/{language}?next=/stats")
        page = viewer.get(f"/stats?{RANGE}&service_id={schema.OTHER_SERVICE}").text
        row = re.search(r'<td data-key="service_id" data-value="other">(.*?)</td>', page,
                        re.S).group(1)
        assert label in row and label in re.search(r"<h2 id=\"node\">(.*?)</h2>", page).group(1)
        assert i18n.translate("table.undo", language) in page
    assert cells(page, "service-undo") == [r for r in page_rows(core("service").tables["undo"])
                                           if r["service_id"] == schema.OTHER_SERVICE]


def test_console_statistics_by_province(browser, core):
    viewer = browser("vera")
    page = viewer.get(f"/stats?{RANGE}&by=province").text
    assert cells(page, "province-visits") == page_rows(core("province").tables["visits"])
    page = viewer.get(f"/stats?{RANGE}&province=50").text
    assert {r["service_point_id"] for r in cells(page, "service_point-visits")} == {"dlt-50"}


def test_console_csv_of_a_table_is_the_stats_verbs_bytes_for_it(browser, console_store,
                                                               tmp_path):
    out = tmp_path / "all.csv"
    parser = argparse.ArgumentParser()
    statistics.add_arguments(parser)
    statistics.main(parser.parse_args(["--db", console_store, "--from", DAY, "--to", DAY,
                                       "--level", "ministry", "--out", str(out)]))
    header, *lines = out.read_bytes().split(b"\r\n")
    viewer = browser("vera")
    for table in ("visits", "no_copy", "progress"):
        response = viewer.get(f"/stats/ministry/{table}.csv?{RANGE}")
        assert response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        expected = b"\r\n".join([header, *(line for line in lines
                                           if line.startswith(table.encode() + b","))]) + b"\r\n"
        assert response.data == expected, table
    assert viewer.get(f"/stats/ministry/nothing.csv?{RANGE}").status_code == 404
    assert viewer.get("/stats/ministry/visits.csv?from=2026-13-01").status_code == 400
    assert viewer.get(f"/stats?from={DAY}&to=2026-11-01").status_code == 400


# --- /metrics --------------------------------------------------------------------------------

def test_console_metrics_read_the_store_and_counters_end_in_total(browser, console_store):
    db = open_database(console_store)
    try:  # two batches' rejections, as the collectors store them
        db.add_malformed({"not JSON": 2, "rating: must be 1-5": 1})
        db.add_malformed({"not JSON": 1})
    finally:
        db.close()
    response = browser().get("/metrics")  # a scraper has no login, and gets no cookie
    assert "Set-Cookie" not in response.headers
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    counters = re.findall(r"^# TYPE (\S+) counter$", response.text, re.M)
    assert counters and all(name.endswith("_total") for name in counters)
    assert "kiosk_fleet_visits_total" in response.text
    states = {s.labels["state"]: s.value for s in families["kiosk_fleet_kiosks"].samples}
    assert states == {"online": 1, "offline": 1, "lost": 1, "unknown": 0}
    visits = {s.labels["outcome"]: s.value for s in families["kiosk_fleet_visits"].samples
              if s.name.endswith("_total")}
    db = open_database(console_store)
    try:
        assert sum(visits.values()) == len(db.visits())
    finally:
        db.close()
    opened = {s.labels["kind"]: s.value for s in families["kiosk_fleet_alarms_open"].samples}
    assert opened["silent"] == 1 and opened["disk_low"] == 0
    malformed = {s.labels["reason"]: s.value
                 for s in families["kiosk_fleet_messages_malformed"].samples
                 if s.name.endswith("_total")}
    assert malformed == {"not JSON": 3, "rating: must be 1-5": 1}


# --- kiosk-fleet users / serve's settings ---------------------------------------------------

def run_users(path, *argv):
    parser = argparse.ArgumentParser()
    users.add_arguments(parser)
    return users.main(parser.parse_args([*argv, "--users", str(path)]))


def test_console_users_verb_manages_a_private_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert run_users(path, "add", "ann", "--role", "operator", "--password-stdin") == 0
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert auth.Users(path).check("ann", "a-long-password").role == "operator"
    monkeypatch.setattr("sys.stdin", io.StringIO("another-password\n"))
    assert run_users(path, "passwd", "ann", "--password-stdin") == 0
    assert auth.Users(path).check("ann", "a-long-password") is None
    capsys.readouterr()
    run_users(path, "list")
    assert capsys.readouterr().out.split() == ["ann", "operator"]
    with pytest.raises(ConfigError, match="exists"):
        monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
        run_users(path, "add", "ann", "--password-stdin")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    with pytest.raises(ConfigError, match="at least"):
        run_users(path, "add", "bea", "--password-stdin")
    assert run_users(path, "remove", "ann") == 0
    assert json.loads(path.read_text()) == {"users": {}}
    assert "a-long-password" not in path.read_text()


@pytest.mark.parametrize(("text", "mode", "message"), [
    ("not json", 0o600, "not a users file"),
    ('{"users": {"ann": {"role": "admin", "hash": "$argon2id$x"}}}', 0o600, "needs a role"),
    ('{"users": {}}', 0o644, "chmod 600"),
])
def test_console_a_bad_users_file_is_refused_with_its_reason(tmp_path, text, mode, message):
    path = tmp_path / "users.json"
    path.write_text(text)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=message):
        auth.read_users(path)
    with pytest.raises(ConfigError, match=message):
        create_app(Settings(db=str(tmp_path / "fleet.sqlite3"), users=path))
    with pytest.raises(ConfigError, match="cannot read"):
        auth.read_users(tmp_path / "missing.json")


def test_console_statistics_are_served_again_for_a_minute_then_recounted(browser, console_app,
                                                                        console_store):
    now = [0.0]
    console_app.extensions["console"].clock = lambda: now[0]
    viewer = browser("vera")
    (before,) = cells(viewer.get(f"/stats?{RANGE}").text, "national-visits")
    db = open_database(console_store)
    try:
        db.add_visits(visits("k1", 5, service_id="dopa.birth"), RECEIVED)
    finally:
        db.close()
    assert cells(viewer.get(f"/stats?{RANGE}").text, "national-visits") == [before]
    now[0] = 60.0
    (after,) = cells(viewer.get(f"/stats?{RANGE}").text, "national-visits")
    assert int(after["visits"]) == int(before["visits"]) + 5


def test_console_serve_refuses_a_short_secret_and_reads_the_brokers_password(tmp_path,
                                                                           users_file):
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    secret, password = tmp_path / "secret", tmp_path / "ops.password"
    secret.write_text("too-short\n")
    password.write_text("ops-secret\n")
    args = parser.parse_args(["--users", str(users_file), "--secret-file", str(secret),
                              "--broker-host", "mqtt.internal", "--broker-password-file",
                              str(password)])
    with pytest.raises(ConfigError, match="32 characters"):
        serve.settings_of(args)
    secret.write_text("x" * 40 + "\n")
    settings = serve.settings_of(args)
    assert settings.secret_key == "x" * 40
    assert (settings.broker.host, settings.broker.username, settings.broker.password) == (
        "mqtt.internal", "ops", "ops-secret")


@pytest.mark.parametrize(("asked", "given"), [
    (("2026-11-05", "2026-11-20"), ("2026-11-01", "2026-11-30")),
    (("2026-11-30", "2026-12-01"), ("2026-11-01", "2026-12-31")),
    (("2028-02-10", "2028-02-10"), ("2028-02-01", "2028-02-29")),
])
def test_console_statistics_cover_whole_months(asked, given):
    """Two ranges a day apart were one subtraction from that day's figures: the console
    widens every range to whole months."""
    first, last = date_range({"from": asked[0], "to": asked[1]})[:2]
    assert (first.isoformat(), last.isoformat()) == given
