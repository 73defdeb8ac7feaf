"""One soak kiosk: its card stack, its data partition, its config and its ``kiosk run`` process.

The kiosk plays ``SCRIPT`` with ``--keep-going --progress``; a reader thread turns each progress
line into the soak's own record (:attr:`KioskUnit.thanked`, kept here, outside the kiosk), so a
thank-you the citizen saw is on record even when the kiosk is killed a moment later. A restart
starts at the repetition after the last one begun.

The store lives on a small loop-mounted ext4 image: a power cut copies the image while it is
still mounted (what the disk held at the cut), then mounts the copy, which replays the journal.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import tomli_w

from benchmarks.soak.reconcile import thank_you_window
from kiosk import config as kiosk_config
from kiosk.rigs.card_profiles import CITIZENS
from kiosk.rigs.card_stack import CardStack

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "kiosk.example.toml"
IMAGE_MB = 64
MIN_FREE_MB = 10  # the lowest floor the config allows
#: One visit: the citizen's card read, answered at once, sent, thanked, card taken back.
SCRIPT = f"""\
wait idle 90
insert citizen-{{n%{CITIZENS}}}
wait return_card 20
remove
wait choose_service
service id-card
wait copy_check
copy none
wait rating
rating 4
wait confirm
ok
wait thank_you 30
ok
wait idle 30
"""
FLOW = {
    "timeout_reading_s": 3, "return_card_s": 3, "timeout_card_problem_s": 3,
    "timeout_already_rated_s": 3, "timeout_choose_service_s": 5, "timeout_copy_check_s": 5,
    "timeout_rating_s": 5, "timeout_reason_s": 5, "confirm_s": 3, "thank_you_s": 2,
    "take_card_s": 5, "reminder_s": 1, "repeat_window_min": 1,
}
#: A kiosk that ends this often in a row without finishing a repetition fails the soak.
FRUITLESS_RESTARTS = 5


def _sh(*argv):
    subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True)


class KioskUnit:
    """A context manager; ``start()`` after the lane runs, ``close()`` stops all of it."""

    def __init__(self, workdir, kiosk_id, lane, *, visits, image_mb=IMAGE_MB,
                 repeat_key_seed=None):
        self.workdir, self.id, self.lane, self.visits = Path(workdir), kiosk_id, lane, visits
        self.image_mb = image_mb
        self.repeat_key_seed = repeat_key_seed
        self.image, self.data = self.workdir / "data.img", self.workdir / "data"
        self.clock_file = self.workdir / "clock-offset"
        self.offset_s = 0.0
        self.ahead_s = 0.0  # the furthest the kiosk's clock was ever stepped ahead
        self._offset_changed = (0.0, 0.0)  # (monotonic time of the last step, offset before)
        self.thanked = []   # (earliest, latest) kiosk wall-clock windows, one per thank-you
        self.begun = -1     # the highest repetition a progress line named
        self.done = 0       # repetitions completed or recovered
        self.recovered = 0  # of which recovered after a failed wait
        self.unexpected_exits = 0  # the kiosk process ended by itself with an error
        self.exit_notes = []
        self._killed = set()  # processes this unit killed on purpose
        self._done_at_revive, self._fruitless = 0, 0
        self._readers = []
        self.restarts = 0
        self.process = None
        self._lock = threading.Lock()
        self.card = CardStack(self.workdir / "card")

    # --- set-up ---------------------------------------------------------------------------

    def start_card(self):
        """Start the card stack first, before any kiosk's disk is mounted: its private mount
        namespace copies the mounts of its time, and a copy would keep an unmounted image's
        loop device busy."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.card.start()

    def start(self):
        """The disk, the config and the kiosk process; after :meth:`start_card`."""
        _sh("truncate", "-s", f"{self.image_mb}M", self.image)
        _sh("mkfs.ext4", "-q", "-F", self.image)
        self.data.mkdir(exist_ok=True)
        self._mount()
        (self.workdir / "script").write_text(SCRIPT, encoding="utf-8")
        password = self.workdir / "mqtt-password"
        password.write_text(self.lane.add_kiosk(self.id))
        password.chmod(0o600)
        raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
        host, port = self.lane.kiosk_endpoint
        raw["kiosk"].update(id=self.id, mode="demo")
        raw.setdefault("storage", {}).update(data_dir=str(self.data), min_free_mb=MIN_FREE_MB)
        raw["mqtt"] = {**raw.get("mqtt", {}), "host": host, "port": port, "tls": False,
                       "username": self.id, "password_file": str(password), "keepalive_s": 5,
                       "will_delay_s": 1, "reconnect_min_s": 0.1, "reconnect_max_s": 2}
        raw.setdefault("telemetry", {}).update(period_s=5, resend_after_s=5)
        raw.setdefault("flow", {}).update(FLOW)
        raw.setdefault("card", {}).update(backend="pcsc", reader="", read_deadline_s=10)
        raw["audio"] = {**raw.get("audio", {}), "enabled": False}
        raw.setdefault("display", {}).update(
            blank_after_min=0, fps=10, office_hours_start="00:00", office_hours_end="24:00",
            office_days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
        raw.setdefault("gpio", {}).update(pin_factory="mock")
        (self.workdir / "kiosk.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
        kiosk_config.load(self.workdir / "kiosk.toml")  # never start a kiosk on a refused file
        self._launch()

    def _mount(self):
        _sh("mount", "-o", "loop", self.image, self.data)

    def _launch(self):
        first = self.begun + 1
        remaining = max(0, self.visits - first)  # 0: only drain what the outbox holds
        # prlimit execs the kiosk (same pid): a crash leaves its core in the work directory,
        # where the privacy scan reads it.
        argv = ["prlimit", "--core=unlimited", "--", sys.executable, "-m", "kiosk", "run",
                "--config", self.workdir / "kiosk.toml", "--headless",
                "--script", self.workdir / "script", "--repeat", remaining,
                "--first", first, "--keep-going", "--recover-s", 120, "--progress",
                "--wait-confirmed", 240,
                "--emulator", self.card.control_path, "--clock-file", self.clock_file,
                "--scene-text", self.workdir / "scenes.txt"]
        if self.repeat_key_seed is not None:
            argv += ["--repeat-key-seed", self.repeat_key_seed]
        env = dict(os.environ, SDL_AUDIODRIVER="dummy", SDL_VIDEODRIVER="dummy",
                   **self.card.env)
        log = open(self.workdir / f"kiosk-{self.restarts}.log", "ab")  # noqa: SIM115 - the child's
        self.process = subprocess.Popen([str(a) for a in argv], env=env, stdout=subprocess.PIPE,
                                        stderr=log, stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        reader = threading.Thread(target=self._read, args=(self.process,), daemon=True,
                                  name=f"progress-{self.id}")
        reader.start()
        self._readers.append(reader)

    def _read(self, process):
        with process.stdout, open(self.workdir / "progress.log", "a",
                                  encoding="utf-8") as record:
            for line in process.stdout:
                text = line.decode("utf-8", "replace").strip()
                record.write(f"{time.time():.3f} {text}\n")
                record.flush()
                words = text.split()
                if len(words) != 3 or words[0] != "script:":
                    continue
                n, what = int(words[1]), words[2]
                with self._lock:
                    self.begun = max(self.begun, n)
                    if what == "thank_you":
                        self.thanked.append(self._window())
                    elif what in ("done", "recovered"):
                        self.done += 1
                        self.recovered += what == "recovered"
        code = process.wait()
        if code != 0 and process.pid not in self._killed:
            with self._lock:
                self.unexpected_exits += 1
                self.exit_notes.append(f"{self.id} exit {code} (kiosk-{self.restarts}.log)")

    def _window(self):
        """Near a clock step the kiosk may not yet have read the new offset: both count."""
        offsets = {self.offset_s}
        changed_at, before = self._offset_changed
        if time.monotonic() - changed_at < 10.0:
            offsets.add(before)
        return thank_you_window(time.time(), offsets, self.ahead_s)

    # --- running --------------------------------------------------------------------------

    @property
    def finished(self):
        """Every repetition begun and the last process ended well (its outbox confirmed)."""
        return self.begun + 1 >= self.visits and self.process.poll() == 0

    def revive(self):
        """Start the kiosk again if it ended before finishing (counted in unexpected_exits);
        RuntimeError when it keeps ending without playing a repetition."""
        if self.process.poll() is None or self.finished:
            return
        if self.done == self._done_at_revive:
            self._fruitless += 1
            if self._fruitless >= FRUITLESS_RESTARTS:
                # The log's path, never its text: what a kiosk logged is the scan's to judge.
                raise RuntimeError(f"{self.id} ended {self._fruitless} times in a row without "
                                   f"playing a visit; see "
                                   f"{self.workdir / f'kiosk-{self.restarts}.log'}")
        else:
            self._fruitless = 0
        self._done_at_revive = self.done
        self.restart()

    def wait_finished(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.finished:
                return True
            self.revive()
            time.sleep(0.2)
        return False

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self._killed.add(self.process.pid)
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self):
        self.kill()
        self.card.emulator.clear_faults()
        self.card.emulator.remove()
        self.restarts += 1
        self._launch()

    def stop(self):
        """End the kiosk and wait for its progress reader, so the record is complete."""
        if self.process is not None and self.process.poll() is None:
            self._killed.add(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        for reader in self._readers:
            reader.join(10)

    # --- faults ---------------------------------------------------------------------------

    def power_cut(self):
        """kill -9, then the disk as it stood: a copy of the mounted image, mounted again."""
        self.kill()
        cut = self.workdir / "data.cut.img"
        _sh("cp", "--sparse=always", self.image, cut)
        _sh("umount", self.data)
        os.replace(cut, self.image)
        self._mount()

    def step_clock(self, seconds):
        self._offset_changed = (time.monotonic(), self.offset_s)
        self.offset_s = seconds
        self.ahead_s = max(self.ahead_s, seconds)
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds}\n")
        os.replace(tmp, self.clock_file)

    def fill_disk(self):
        """Ballast until the partition is below the kiosk's floor (``min_free_mb``)."""
        stat = os.statvfs(self.data)
        free = stat.f_bavail * stat.f_frsize
        size = max(0, free - (MIN_FREE_MB // 2) * 1024 * 1024)
        with open(self.data / "ballast", "wb") as ballast:
            os.posix_fallocate(ballast.fileno(), 0, size)

    def free_disk(self):
        """The ballast gone for good: synced, or a power cut right after would bring it back
        (ext4 commits its journal every 5 s) and keep the kiosk out of service."""
        (self.data / "ballast").unlink(missing_ok=True)
        _sh("sync", "-f", self.data)  # this partition only: the other kiosks' cuts stay real

    # --- after the run --------------------------------------------------------------------

    def unmount(self):
        if os.path.ismount(self.data):
            _sh("umount", self.data)

    def close(self):
        self.stop()
        try:
            self.card.close()
        finally:
            if os.path.ismount(self.data):
                subprocess.run(["umount", str(self.data)], check=False)
