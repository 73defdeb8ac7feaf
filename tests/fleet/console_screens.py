"""Screenshots of every console page in Thai and English, as a person at a laptop sees them:
``python -m tests.fleet.console_screens [OUT]`` (default docs/console/). The store holds the
statistics tests' known fleet (:func:`tests.fixtures.console.fill_store`), the map's a fleet
at the sample registry's points (:func:`tests.fleet.map_store.fill_map_store`); the browser is
Debian's headless chromium (:mod:`tests.fleet.console_browser`)."""

import sys
import tempfile
from pathlib import Path

from argon2 import PasswordHasher

from kiosk.fleet.console import auth
from kiosk.fleet.console.app import Settings, create_app
from tests.fixtures.console import DAY, fill_store
from tests.fleet.console_browser import chromium, log_in, serving, wait
from tests.fleet.map_store import fill_map_store

ROOT = Path(__file__).resolve().parents[2]
RANGE = f"from={DAY}&to={DAY}"
#: Page name -> path, logged in as an operator (the fullest pages).
PAGES = {
    "fleet": "/fleet",
    "kiosk": "/kiosk/k1",
    "statistics": f"/stats?{RANGE}",
    "statistics-ministry": f"/stats?{RANGE}&ministry=กระทรวงมหาดไทย",
    "statistics-service": f"/stats?{RANGE}&service_point_id=dopa-10&service_id=dopa.id_card",
    "commands": "/commands",
    # A command's page as it comes back after sending: the known store's stored reply.
    "command-replies": "/commands/ops-abcdefghijklmnop",
}
#: The map's pages, over the map's store.
MAP_PAGES = {"map": f"/map?{RANGE}", "map-csat": f"/map?{RANGE}&colour=csat"}


def full_page(driver, path):
    """Grow the window to the page's height so the PNG holds all of it."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(height + 120, 600))
    driver.save_screenshot(str(path))


def capture(out):
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        fill_store(str(scratch / "fleet.sqlite3"), scratch)
        light = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
        auth.write_users(scratch / "users.json", {
            "otto": auth.User("otto", "operator", light.hash("screens-pass-1"))})
        fill_map_store(str(scratch / "map.sqlite3"))
        apps = [create_app(Settings(db=str(scratch / name), users=scratch / "users.json"))
                for name in ("fleet.sqlite3", "map.sqlite3")]
        driver = chromium()
        written = []
        try:
            for app, pages in zip(apps, (PAGES, MAP_PAGES), strict=True):
                with serving(app) as base:
                    if pages is PAGES:
                        for language in ("th", "en"):
                            driver.get(f"{base}/language/{language}?next=/login")
                            full_page(driver, out / f"login-{language}.png")
                            written.append(out / f"login-{language}.png")
                        driver.get(f"{base}/language/th?next=/login")
                    log_in(driver, base, "otto", "screens-pass-1")
                    for language in ("th", "en"):
                        driver.get(f"{base}/language/{language}?next=/fleet")
                        for name, path in pages.items():
                            driver.set_window_size(1366, 900)
                            driver.get(base + path)
                            if pages is MAP_PAGES:
                                wait(driver, lambda d: d.find_element(
                                    "id", "map").get_attribute("data-pins"), "the pins", 120)
                            target = out / f"{name}-{language}.png"
                            if pages is MAP_PAGES:  # the map and the table's first rows: the
                                driver.save_screenshot(str(target))  # table is 470 rows long
                            else:
                                full_page(driver, target)
                            written.append(target)
        finally:
            driver.quit()
            for app in apps:
                app.extensions["console"].db.close()
    return written


def main(argv):
    out = Path(argv[0]) if argv else ROOT / "docs" / "console"
    for path in capture(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
