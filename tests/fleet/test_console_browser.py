"""The console in headless chromium (issue 13's acceptance): viewer and operator log in; a
viewer cannot send a command, by the form or by a forged POST; a POST without its CSRF token is
refused; a ping reaches a running kiosk through the real broker and its reply, stored by a real
collector, appears on the page; the drill-down from national to one service shows the core's
figures; a downloaded CSV holds what the page shows."""

import datetime as dt

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from kiosk.fleet import registry, statistics
from kiosk.fleet.collector import Collector
from kiosk.fleet.console.app import Broker, Settings, create_app
from kiosk.fleet.console.stats import date_range
from kiosk.fleet.db import open_database
from kiosk.period import BANGKOK
from tests.fixtures.broker import wait_until
from tests.fixtures.console import DAY, PASSWORDS
from tests.fleet.console_browser import log_in, serving, wait

pytestmark = pytest.mark.slow

START = dt.datetime(2026, 12, 1, tzinfo=BANGKOK)
END = dt.datetime(2026, 12, 2, tzinfo=BANGKOK)


@pytest.fixture
def base(console_app):
    with serving(console_app) as url:
        yield url


def shown(driver, table_id):
    """``[{column: text}]`` of a table on the page (key columns by their core value)."""
    return driver.execute_script("""
        const rows = [];
        for (const tr of document.querySelectorAll(`#${arguments[0]} tbody tr`)) {
          const row = {};
          for (const td of tr.querySelectorAll('td[data-key]'))
            row[td.dataset.key] = td.dataset.value;
          for (const cell of tr.querySelectorAll('[data-measure]'))
            row[cell.dataset.measure] = cell.textContent.trim();
          rows.push(row);
        }
        return rows;""", table_id)


def as_shown(table, keep=lambda key: True):
    """The core's rows as the page shows them (a withheld share of abandoned visits is left
    out of its count's cell)."""
    return [{**dict(zip(table.keys, key, strict=True)),
             **{m: "" if v is None else ("✔" if v is True else "–" if v is False else str(v))
                for m, v in row.items() if not (v is None and m.startswith("abandoned_share_"))}}
            for key, row in table.rows.items() if keep(key)]


def post_status(driver, path, fields):
    """POST ``fields`` from the page with fetch (the browser's cookies go along): a forged
    request as a script on a page of the site could make it. Returns the HTTP status."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: 'POST', credentials: 'same-origin',
                             body: new URLSearchParams(arguments[1])})
          .then(r => done(r.status), () => done(-1));""", path, fields)


def test_console_browser_viewer_cannot_command_and_csrf_is_required(driver, base):
    log_in(driver, base, "vera", PASSWORDS["vera"])
    driver.get(f"{base}/commands")
    assert driver.find_elements(By.ID, "viewer-notice")
    assert not driver.find_elements(By.ID, "command-form")
    token = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    assert post_status(driver, "/commands", {"csrf": token, "target": "kiosk",
                                             "kiosk_id": "k1", "command": "ping"}) == 403

    log_in(driver, base, "otto", PASSWORDS["otto"])
    driver.get(f"{base}/commands")
    assert driver.find_elements(By.ID, "command-form")
    assert post_status(driver, "/commands", {"target": "kiosk", "kiosk_id": "k1",
                                             "command": "ping"}) == 400
    driver.execute_script("document.querySelector('#command-form input[name=csrf]').remove()")
    driver.find_element(By.NAME, "kiosk_id").send_keys("k1")
    driver.find_element(By.ID, "send").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "p.error"), "the refusal")
    assert "400" in driver.find_element(By.TAG_NAME, "h1").text


def test_console_browser_drills_to_one_service_with_the_cores_figures(driver, base,
                                                                      console_store):
    db = open_database(console_store)
    try:
        def core(level):
            return statistics.compute(db, registry.Registry(db.database), START, END,
                                      level).tables
        log_in(driver, base, "vera", PASSWORDS["vera"])
        driver.get(f"{base}/stats?from={DAY}&to={DAY}")
        for name, table in core("national").items():
            assert shown(driver, f"national-{name}") == as_shown(table), name
        for label in ("กระทรวงมหาดไทย", "กรมการปกครอง", "dopa-10"):
            driver.find_element(By.LINK_TEXT, label).click()
        assert shown(driver, "service_point-visits") == as_shown(
            core("service_point")["visits"], lambda key: key == ("dopa-10",))
        driver.find_element(By.CSS_SELECTOR, "#service_point-no_copy a[href*='dopa.id_card']"
                            ).click()
        assert shown(driver, "service_point-no_copy") == as_shown(
            core("service_point")["no_copy"], lambda key: key[:2] == ("dopa-10",
                                                                      "dopa.id_card"))
        for name, table in core("service").items():
            assert shown(driver, f"service-{name}") == as_shown(
                table, lambda key: key[0] == "dopa.id_card"), name
        trail = driver.find_element(By.CSS_SELECTOR, "nav.trail").text
        assert "dopa-10" in trail and "dopa.id_card" in trail
    finally:
        db.close()


def test_console_browser_downloaded_csv_holds_what_the_page_shows(driver, base):
    log_in(driver, base, "vera", PASSWORDS["vera"])
    driver.get(f"{base}/stats?from={DAY}&to={DAY}")
    page = shown(driver, "national-ratings")
    driver.find_element(By.CSS_SELECTOR, "[data-table=ratings][data-level=national] a.csv"
                        ).click()
    # The page's range is the whole month of the day asked for (ranges a day apart would
    # give a day's figures by subtraction).
    first, last = date_range({"from": DAY, "to": DAY})[:2]
    path = driver.downloads / f"statistics-national-ratings-{first}-{last}.csv"
    wait_until(path.exists, "the CSV download")
    figures = statistics.read_csv(path.read_bytes())
    assert {table for table, _, _ in figures} == {"ratings"}
    (row,) = page
    assert {measure: value for (_, _, measure), value in figures.items()} == {
        measure: ("yes" if value == "✔" else "no" if value == "–" else value)
        for measure, value in row.items()}


def test_console_browser_ping_reply_appears_on_the_page(driver, broker, kiosk_config, running,
                                                        tmp_path, users_file):
    store = str(tmp_path / "live.sqlite3")
    user, password = broker.collector_credentials
    collector = Collector(store, "127.0.0.1", broker.port, user, password, batch_s=0.05)
    collector.start()
    try:
        assert collector.wait_for_connected(10)
        running(kiosk_config())
        wait_until(lambda: collector.counters.service_points >= 1, "the kiosk's pin")
        ops_user, ops_password = broker.ops_credentials
        app = create_app(Settings(db=store, users=users_file, broker=Broker(
            "127.0.0.1", broker.port, ops_user, ops_password)))
        with serving(app) as url:
            log_in(driver, url, "otto", PASSWORDS["otto"])
            driver.get(f"{url}/fleet")
            assert driver.find_elements(By.CSS_SELECTOR, "tr[data-kiosk=kiosk-a]")
            driver.get(f"{url}/commands")
            driver.find_element(By.NAME, "kiosk_id").send_keys("kiosk-a")
            Select(driver.find_element(By.NAME, "command")).select_by_visible_text("ping")
            driver.find_element(By.ID, "send").click()
            wait(driver, lambda d: "/commands/ops-" in d.current_url, "the command page")
            # The live refresh (our script) replaces the table once the reply is stored.
            wait(driver, lambda d: d.find_elements(
                By.CSS_SELECTOR, "#replies tr[data-kiosk=kiosk-a].ok"), "the kiosk's reply")
            (reply,) = collector.db.replies()
            assert reply.kiosk_id == "kiosk-a" and reply.ok
            assert reply.correlation_id in driver.current_url
            app.extensions["console"].db.close()
    finally:
        collector.stop()
