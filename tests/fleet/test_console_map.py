"""The console's map (its GeoJSON and its table against the statistics core and the store),
its tiles setting, and the vendored assets: every script and stylesheet of every page comes
from the console itself, and the vendored ones are the pinned bytes."""

import argparse
import io
import re
import tarfile
from html import unescape

import pytest

from kiosk.fleet import registry
from kiosk.fleet.console import assets, serve
from kiosk.fleet.console.app import Settings, create_app
from kiosk.fleet.console.map import point_status
from kiosk.fleet.db import open_database
from kiosk.fleet.statistics import compute
from tests.fleet.test_console import END, RANGE, START
from tests.fleet.test_statistics import RECEIVED, pin, visits

PAGES = ("/login", "/fleet", "/kiosk/k1", "/stats", f"/stats?{RANGE}&ministry=moi",
         "/commands", f"/map?{RANGE}", f"/map?{RANGE}&colour=csat")


def registered(console_store, kind="points", at="2026-12-01T17:00:00.000Z"):
    """The service points registered (or pinned, ``kind="pins"``) at the range's end."""
    db = open_database(console_store)
    try:
        model = registry.Registry(db.database).models[kind]
        return {row.service_point_id for row in model.select().where(
            (model.valid_from < at) & (model.valid_to.is_null() | (model.valid_to >= at)))}
    finally:
        db.close()


@pytest.fixture
def core(console_store):
    """``compute(level)`` of the statistics core over the known day."""
    db = open_database(console_store)
    yield lambda level: compute(db, registry.Registry(db.database), START, END, level)
    db.close()


@pytest.fixture
def few_visits(console_store):
    """Two visits at dopa-50, by a kiosk of its own: fewer than the statistics publish."""
    db = open_database(console_store)
    with db.database.atomic():
        db.apply_service_point(pin("k9", "dopa-50"), RECEIVED)
        db.add_visits(visits("k9", 2), RECEIVED)
    db.close()


def test_map_points_are_the_registry_with_the_cores_figures_and_the_stores_status(
        browser, console_store, core):
    data = browser("vera").get(f"/map/points.json?{RANGE}").json
    tables = core("service_point").tables
    shown = {f["properties"]["id"]: f["properties"] for f in data["features"]}
    assert set(shown) == registered(console_store, "pins") == {"dopa-10", "dopa-50"}
    for spid, p in shown.items():
        key = (spid,)
        assert p["visits"] == tables["visits"].rows.get(key, {}).get("visits")
        assert p["csat"] == tables["ratings"].rows.get(key, {}).get("csat")
        assert p["copy_request_rate"] == tables["copy"].rows.get(key, {}).get(
            "copy_request_rate")
        assert p["url"].startswith("/stats?") and f"service_point_id={spid}" in p["url"]
    # k1 (online, no open alarm) stands at dopa-10; no kiosk at dopa-50.
    assert {spid: p["status"] for spid, p in shown.items()} == {"dopa-10": "online",
                                                                "dopa-50": "no_kiosk"}
    assert [k["id"] for k in shown["dopa-10"]["kiosks"]] == ["k1"]
    assert len(data["provinces"]) == 77


def test_map_never_shows_a_hidden_count_as_a_number(few_visits, browser, core):
    tables = core("service_point").tables
    assert tables["visits"].rows[("dopa-50",)]["visits"] == "<5"
    made = browser("vera")
    shown = {f["properties"]["id"]: f["properties"]
             for f in made.get(f"/map/points.json?{RANGE}").json["features"]}
    assert shown["dopa-50"]["visits"] == "<5"
    assert shown["dopa-50"]["csat"] is None and shown["dopa-50"]["copy_request_rate"] is None
    assert shown["dopa-50"]["colour"]["csat"] == "none"
    row = re.search(r'data-point="dopa-50".*?</tr>', made.get(f"/map?{RANGE}").text, re.S)
    assert 'data-measure="visits">&lt;5<' in row.group(0)


def test_map_table_holds_every_point_without_script(browser, console_store, core):
    html = browser("vera").get(f"/map?{RANGE}").text
    rows = dict(re.findall(r'data-point="([^"]+)".*?data-measure="visits">([^<]*)<', html,
                           re.S))
    assert set(rows) == registered(console_store) == {"dopa-10", "dopa-50", "dlt-50"}
    # dlt-50 is not pinned (no place on the map) but listed, with k2: lost, its alarm open.
    assert re.search(r'data-point="dlt-50".*?/kiosk/k2.*?class="state-lost"', html, re.S)
    visits = core("service_point").tables["visits"].rows
    for spid, text in rows.items():
        value = visits.get((spid,), {}).get("visits")
        assert unescape(text) == ("" if value is None else str(value))


def test_map_tiles_setting_reaches_the_page_and_its_content_security_policy(
        console_store, users_file, tmp_path):
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    base = ["--users", str(users_file), "--db", console_store]
    assert serve.settings_of(parser.parse_args(base)).tiles == \
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    assert serve.settings_of(parser.parse_args([*base, "--tiles", "none"])).tiles is None
    app = create_app(Settings(db=console_store, users=users_file,
                              tiles="https://tiles.example.org/{z}/{x}/{y}.png"))
    try:
        client = app.test_client()
        csp = client.get("/login", base_url="https://localhost").headers[
            "Content-Security-Policy"]
        assert "img-src 'self' data: https://tiles.example.org;" in csp
        assert "script-src 'self';" in csp
    finally:
        app.extensions["console"].db.close()


def test_every_script_and_stylesheet_is_the_consoles_own_and_vendored_ones_are_pinned(
        browser):
    absent = assets.missing()
    if absent:
        pytest.fail(f"vendored assets missing or altered, run ./dev setup: {absent}")
    made = browser("vera")
    seen = set()
    for page in PAGES:
        response = made.get(page)
        assert response.status_code == 200, page
        tags = re.findall(r'<(?:script|link)\b[^>]*>', response.text)
        for tag in tags:
            url = re.search(r'(?:src|href)="([^"]+)"', tag)
            if "<link" in tag and 'rel="stylesheet"' not in tag or url is None:
                continue
            url = unescape(url.group(1))
            assert url.startswith("/static/") and "//" not in url, (page, url)
            seen.add(url)
            served = made.get(url)
            data = served.get_data()
            served.close()
            assert served.status_code == 200, url
            if url.startswith("/static/vendor/"):
                pinned = assets.pinned()[url.removeprefix("/static/vendor/")]
                assert assets.integrity(data) == pinned
                assert f'integrity="{pinned}"' in tag
    assert {f"/static/vendor/{path}" for path in assets.pinned() if not path.endswith(".png")} \
        <= seen


def test_assets_refuse_a_tarball_or_a_file_not_as_pinned(tmp_path):
    package = assets.PACKAGES[0]
    with pytest.raises(ValueError, match="tarball"):
        assets.unpack(package, b"not the tarball", tmp_path)
    # A tarball pinned as itself whose file differs from its pin is refused too.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in package.files:
            info = tarfile.TarInfo(member)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"bad"))
    forged = assets.Package(package.name, package.version,
                            assets.integrity(buffer.getvalue()), package.files)
    with pytest.raises(ValueError, match="not as pinned"):
        assets.unpack(forged, buffer.getvalue(), tmp_path)
    assert not any(tmp_path.iterdir())
    assert set(assets.missing(tmp_path)) == set(assets.pinned())


def test_map_point_status_is_its_worst_kiosk():
    states = {"a": "online", "b": "lost", "c": None, "d": "offline"}
    assert point_status((), states, set()) == "no_kiosk"
    assert point_status(("a",), states, set()) == "online"
    assert point_status(("a",), states, {"a"}) == "alarm"
    assert point_status(("a", "c"), states, set()) == "unknown"
    assert point_status(("b", "c", "d"), states, set()) == "lost"
    assert point_status(("a", "d"), states, {"a"}) == "offline"
