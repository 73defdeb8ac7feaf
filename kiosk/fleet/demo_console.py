"""The console in ``kiosk demo``: a simulated fleet beside the demo kiosk, and the console over
the demo's collector, with a viewer and an operator whose passwords are printed.

The simulated kiosks (:mod:`kiosk.fleet.simulate`) play one office day of today within seconds
through the demo's broker, at points of the shipped sample registry, which is imported into
the demo's store so the map and the statistics have their places. A few of them are then cut
off or stopped, so the map shows more than one status. The headless demo saves screenshots of
the console's pages with Debian's chromium, when it is there.
"""

import datetime as dt
import secrets
import shutil
import threading
from pathlib import Path

from kiosk.fleet import registry
from kiosk.fleet.console import auth
from kiosk.fleet.console.app import Broker, Settings, create_app
from kiosk.fleet.db import open_database
from kiosk.fleet.simulate import Simulation
from kiosk.period import BANGKOK

SAMPLE = Path(registry.__file__).with_name("data") / "registry-sample.csv"
USERS = {"viewer": "viewer", "operator": "operator"}
#: The simulated office day (07:30-17:30 today) lasts about this many real seconds.
DAY_S = 3.0
#: How long the collector may take to store the day (a few hundred kiosks: about 20,000 visits).
SETTLE_S = 60.0
#: Every LOST-th simulated kiosk ends cut off (lost), every OFFLINE-th stopped (offline).
LOST, OFFLINE = 11, 17
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: The pages the headless demo saves, as (file name, path).
PAGES = (("fleet", "/fleet"), ("map", "/map?colour=csat"), ("statistics", "/stats"),
         ("commands", "/commands"))


class DemoConsole:
    """A context manager: the simulated fleet and the console served on 127.0.0.1."""

    def __init__(self, workdir, broker, fleet_db_path, kiosks, *, tiles=None):
        self.workdir, self.broker, self.db_path = Path(workdir), broker, str(fleet_db_path)
        self.kiosks, self.tiles = kiosks, tiles
        self.passwords = {name: secrets.token_urlsafe(9) for name in USERS}
        self.url = None
        self._simulation = self._server = self._thread = self._app = None

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        fleet_db = open_database(self.db_path)
        try:
            today = dt.datetime.now(BANGKOK).date()
            registry.import_file(registry.Registry(fleet_db.database), SAMPLE,
                                 as_of=dt.datetime.combine(today - dt.timedelta(days=60),
                                                           dt.time(), BANGKOK))
        finally:
            fleet_db.close()
        accounts = self.broker.add_kiosks(f"sim-{n:03d}" for n in range(self.kiosks))
        start = dt.datetime.combine(dt.datetime.now(BANGKOK).date(), dt.time(7, 30), BANGKOK)
        self._simulation = Simulation(list(accounts.items()), host="127.0.0.1",
                                      port=self.broker.port, start=start, hours=10,
                                      factor=10 * 3600 / DAY_S, seed=13, outage_rate=0.05)
        print(f"demo: simulating an office day of {self.kiosks} kiosk(s) ...", flush=True)
        kiosks = self._simulation.run()
        # Resent rarely: a day's backlog resent every second buries the collector in copies.
        settled = self._simulation.settle(SETTLE_S, resend_s=15.0)
        print(f"demo: {self._simulation.totals()['visits']} simulated visits "
              + ("stored" if settled else f"sent, some not yet stored after {SETTLE_S:.0f} s"),
              flush=True)
        end = start + dt.timedelta(hours=10)
        for n, kiosk in enumerate(kiosks, 1):
            if n % LOST == 0:
                kiosk.drop(end, end + dt.timedelta(hours=24))
            elif n % OFFLINE == 0:
                kiosk.close(end)
        users_file = self.workdir / "console-users.json"
        auth.write_users(users_file, {name: auth.User(name, role, auth.hash_password(
            self.passwords[name])) for name, role in USERS.items()})
        ops = Broker("127.0.0.1", self.broker.port, *self.broker.ops_credentials)
        self._app = create_app(Settings(db=self.db_path, users=users_file, broker=ops,
                                        tiles=self.tiles))
        self._serve()
        print(f"demo: the console is at {self.url}/ (viewer: {self.passwords['viewer']}, "
              f"operator: {self.passwords['operator']})", flush=True)

    def _serve(self):
        from waitress import wasyncore  # noqa: PLC0415 (only the demo's console)
        from waitress.server import create_server  # noqa: PLC0415

        self._server = create_server(self._app, host="127.0.0.1", port=0, threads=4,
                                     ident="kiosk-console")
        self._stop = threading.Event()

        def loop():  # small steps, so that stopping never waits on a browser's keep-alive
            while not self._stop.is_set():
                wasyncore.loop(timeout=0.05, map=self._server._map, count=1)
            for channel in list(self._server._map.values()):
                channel.close()
            self._server.task_dispatcher.shutdown()

        self._thread = threading.Thread(target=loop, name="demo-console", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.effective_port}"

    def __exit__(self, *exc):
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
        if self._simulation is not None:
            self._simulation.stop()
        if self._app is not None:
            self._app.extensions["console"].db.close()

    def screenshots(self, out):
        """PNGs of the console's pages (as the viewer, in Thai and English) in ``out``; a
        note instead when chromium or its driver is not installed."""
        if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
            print("demo: no chromium here: the console's screenshots are left out")
            return []
        from selenium import webdriver  # noqa: PLC0415 (only the headless demo)
        from selenium.webdriver.chrome.options import Options  # noqa: PLC0415
        from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
        from selenium.webdriver.common.by import By  # noqa: PLC0415
        from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

        out.mkdir(parents=True, exist_ok=True)
        options = Options()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1366,900",
                         "--no-first-run", "--disable-background-networking"):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        saved = []
        try:
            driver.get(f"{self.url}/login")
            driver.find_element(By.NAME, "name").send_keys("viewer")
            driver.find_element(By.NAME, "password").send_keys(self.passwords["viewer"])
            driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
            WebDriverWait(driver, 15).until(lambda d: "/login" not in d.current_url)
            for lang in ("th", "en"):
                driver.get(f"{self.url}/language/{lang}?next=/fleet")
                for name, path in PAGES:
                    driver.get(self.url + path)
                    if name == "map":
                        WebDriverWait(driver, 90).until(lambda d: d.find_element(
                            By.ID, "map").get_attribute("data-pins"))
                    saved.append(out / f"{name}-{lang}.png")
                    driver.save_screenshot(str(saved[-1]))
        finally:
            driver.quit()
        print(f"demo: {len(saved)} screenshots of the console in {out}/")
        return saved
