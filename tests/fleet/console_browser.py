"""The console in a real browser: the app served by waitress on a free port in a thread, and
Debian's headless chromium through selenium, its browser and driver paths pinned so nothing
reaches for the network (selenium's own driver manager never runs). Used by the browser tests
and by the screenshot command (:mod:`tests.fleet.console_screens`)."""

import contextlib
import threading

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from waitress import wasyncore
from waitress.server import create_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: A laptop's screen.
WINDOW = (1366, 900)
WAIT_S = 15


@contextlib.contextmanager
def serving(app):
    """``base URL`` of ``app`` served by waitress on 127.0.0.1 (Chromium treats it as a secure
    context, so the Secure session cookie works over plain http here). The loop runs in small
    steps so that it, not another thread, closes its channels at the end (a browser's
    keep-alive connection would hold ``run()`` forever)."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)
        for channel in list(server._map.values()):
            channel.close()
        server.task_dispatcher.shutdown()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(5)


def chromium(download_dir=None, window=WINDOW):
    """A headless chromium session (the caller quits it)."""
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={window[0]},{window[1]}",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--lang=th"):
        options.add_argument(argument)
    if download_dir is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def log_in(driver, base, name, password):
    driver.delete_all_cookies()
    driver.get(f"{base}/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "main button[type=submit]").click()
    wait(driver, lambda d: "/login" not in d.current_url, "the login to go through")


def wait(driver, predicate, what, timeout=WAIT_S):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        predicate, message=f"waiting for {what}")
