"""The map in headless chromium: every pinned service point of the sample registry is found on
the map, as a pin or inside a cluster's count, with no tile server (the provinces' names on a
plain background); a popup links to the point's statistics; the statistics page shows its
charts."""

import pytest
from selenium.webdriver.common.by import By

from kiosk.fleet.console.app import Settings, create_app
from tests.fixtures.console import DAY, PASSWORDS
from tests.fleet.console_browser import log_in, serving, wait
from tests.fleet.map_store import fill_map_store

pytestmark = pytest.mark.slow


def counted(driver):
    """Pins shown one by one, plus the points inside the clusters' counts."""
    return driver.execute_script("""
        const pins = document.querySelectorAll('#map .pin').length;
        let clustered = 0;
        for (const span of document.querySelectorAll('#map .marker-cluster span'))
          clustered += Number(span.textContent);
        return [pins, clustered];""")


def test_console_browser_map_finds_every_pin_and_a_chart_is_drawn(driver, tmp_path,
                                                                   users_file):
    store = str(tmp_path / "fleet.sqlite3")
    pinned = fill_map_store(store, with_visits=False)
    assert len(pinned) > 400  # the sample: most of its points are pinned
    app = create_app(Settings(db=store, users=users_file))
    try:
        with serving(app) as base:
            log_in(driver, base, "vera", PASSWORDS["vera"])
            driver.get(f"{base}/map?from={DAY}&to={DAY}")
            box = driver.find_element(By.ID, "map")
            wait(driver, lambda d: box.get_attribute("data-pins"), "the pins")
            assert int(box.get_attribute("data-pins")) == len(pinned)
            pins, clustered = counted(driver)
            assert pins + clustered == len(pinned)
            assert clustered > pins  # clusters at national zoom
            labels = driver.find_elements(By.CSS_SELECTOR, "#map .province-label")
            assert len(labels) == 77 and "no-tiles" in box.get_attribute("class")
            # A cluster opens on a click; a pin's popup links to its point's statistics.
            driver.find_element(By.CSS_SELECTOR, "#map .marker-cluster").click()
            wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#map .pin"),
                 "a cluster to open")
            pin = driver.find_elements(By.CSS_SELECTOR, "#map .pin")[0]
            driver.execute_script("arguments[0].click()", pin)
            link = wait(driver, lambda d: d.find_elements(
                By.CSS_SELECTOR, ".leaflet-popup .popup-title"), "a popup")[0]
            assert "/stats?" in link.get_attribute("href")
            assert "service_point_id=" in link.get_attribute("href")
            driver.get(f"{base}/stats?from={DAY}&to={DAY}")
            figures = driver.find_elements(By.CSS_SELECTOR, "#charts figure.chart img")
            assert len(figures) == 4
            wait(driver, lambda d: all(d.execute_script(
                "return arguments[0].complete && arguments[0].naturalHeight", img)
                for img in figures), "the charts")
    finally:
        app.extensions["console"].db.close()
