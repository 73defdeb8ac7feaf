"""The image recipe in a real Debian 12 root: chroot_script, then systemd-analyze inside it.

A stand-in for the Raspberry Pi OS image (same Debian release, this machine's architecture):
debootstrap --variant=minbase (tarball cached under .cache/), the wheelhouse from
build-wheelhouse, then apply-to-root runs chroot_script as pi-gen would. Everything runs under
``env -i`` so the host's certificates and pip settings cannot leak into the build; only pip's
wheel cache is shared, so sources the dev set-up already compiled are not compiled again.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk import __version__
from kiosk.update import release, slots
from tests.fixtures.appliance import VALID_TOML

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
TARBALL = CACHE / "bookworm-minbase.tgz"
WHEELHOUSE = CACHE / "wheelhouse"
MIRROR = "http://deb.debian.org/debian"
CLEAN_ENV = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
             f"HOME={CACHE / 'home'}"]
OUR_UNITS = ("kiosk.service", "kiosk-firstboot.service", "kiosk-out-of-order.service",
             "kiosk-console-report.service",
             "var-lib-kiosk.mount", "kiosk-updater.service",
             "kiosk-updater.path", "kiosk-updater.timer", "kiosk-cert.service",
             "kiosk-cert.path", "kiosk-cert.timer")
UNIT_DIRS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")

pytestmark = pytest.mark.slow


def run(cmd, timeout=600, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def why_no_image():
    if os.geteuid() != 0:
        return "needs root for debootstrap and chroot"
    for tool in ("debootstrap", "chroot", "mount"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    reason = why_no_image()
    if reason:
        pytest.skip(reason)
    CACHE.mkdir(exist_ok=True)
    (CACHE / "home").mkdir(exist_ok=True)
    if not TARBALL.exists():
        work = tmp_path_factory.mktemp("debootstrap")
        done = subprocess.run([*CLEAN_ENV, "debootstrap", "--variant=minbase",
                               f"--make-tarball={TARBALL}", "bookworm", str(work), MIRROR],
                              capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            TARBALL.unlink(missing_ok=True)
            pytest.skip(f"debootstrap cannot fetch Debian 12: {done.stderr.strip()[-300:]}")
    root = tmp_path_factory.mktemp("image") / "root"
    run([*CLEAN_ENV, "debootstrap", "--variant=minbase", f"--unpack-tarball={TARBALL}",
         "bookworm", str(root), MIRROR])
    # pip's wheel cache is the one `./dev setup` filled: PyICU and pyscard are compiled once per
    # machine, not again for the image (about 130 s of a fresh clone's suite).
    pip_cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"],
                               capture_output=True, text=True).stdout.strip()
    run([*CLEAN_ENV, f"PIP_CACHE_DIR={pip_cache or CACHE / 'home/.cache/pip'}",
         str(ROOT / "provisioning/build-wheelhouse"), str(WHEELHOUSE)])
    keys = tmp_path_factory.mktemp("release-keys")
    (keys / "release-key.pub").write_bytes(release.generate_key()[1])
    build = run([*CLEAN_ENV, f"KIOSK_RELEASE_KEY_FILE={keys / 'release-key.pub'}",
                 str(ROOT / "provisioning/apply-to-root"), str(root), str(WHEELHOUSE)])
    run(["mount", "-t", "proc", "proc", str(root / "proc")])
    yield root, build.stdout
    subprocess.run(["umount", str(root / "proc")], check=False)
    shutil.rmtree(root, ignore_errors=True)


def in_image(root, *cmd):
    return subprocess.run(["chroot", str(root), "/usr/bin/env", "-i",
                           "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", *cmd],
                          capture_output=True, text=True, timeout=120)


def unit_file(root, name):
    return next((root / d / name for d in UNIT_DIRS if (root / d / name).exists()), None)


@pytest.mark.parametrize("unit", OUR_UNITS)
def test_image_unit_passes_systemd_analyze_verify(image, unit):
    root, _ = image
    done = in_image(root, "systemd-analyze", "verify", f"/etc/systemd/system/{unit}")
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_image_every_unit_our_units_name_exists(image):
    root, _ = image
    named = set()
    for unit in OUR_UNITS:
        for line in (root / "etc/systemd/system" / unit).read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("After", "Before", "Wants", "Requires", "WantedBy", "OnFailure",
                       "Conflicts"):
                named.update(value.split())
    assert {"pcscd.socket", "multi-user.target", "kiosk-out-of-order.service"} <= named
    missing = sorted(n for n in named if unit_file(root, n) is None)
    assert missing == []


def test_image_units_are_enabled_and_consoles_masked(image):
    root, _ = image
    wants = root / "etc/systemd/system"
    for link in ("multi-user.target.wants/kiosk.service",
                 "sysinit.target.wants/kiosk-firstboot.service",
                 "local-fs.target.wants/var-lib-kiosk.mount",
                 "sockets.target.wants/pcscd.socket",
                 "multi-user.target.wants/kiosk-updater.service",
                 "paths.target.wants/kiosk-updater.path",
                 "timers.target.wants/kiosk-updater.timer",
                 "paths.target.wants/kiosk-cert.path",
                 "timers.target.wants/kiosk-cert.timer",
                 "multi-user.target.wants/systemd-networkd.service"):
        target = os.readlink(wants / link)  # absolute inside the image, so resolve it there
        assert (root / target.lstrip("/")).is_file(), link
    for masked in ("ctrl-alt-del.target", "getty@tty1.service"):
        assert os.readlink(wants / masked) == "/dev/null"


def test_image_kiosk_user_venv_and_no_vpcd(image):
    root, build_log = image
    passwd = (root / "etc/passwd").read_text()
    assert re.search(r"^kiosk:x:\d+:\d+:.*:/usr/sbin/nologin$", passwd, re.M)
    groups = in_image(root, "id", "-nG", "kiosk").stdout.split()
    assert {"video", "render", "input", "gpio", "audio"} <= set(groups)
    cfg = (root / "opt/kiosk/a/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    # Slot a of two, complete with this version, and picked by `current` (docs/updates.md).
    apps = root / "opt/kiosk"
    assert (slots.active_slot(apps), slots.installed_version(apps, "a")) == ("a", __version__)
    key = root / "usr/share/citizeninfo-kiosk/release-key.pub"
    assert release.key_id(key.read_bytes()) and key.stat().st_mode & 0o777 == 0o644
    assert not list(root.glob("usr/lib/pcsc/drivers/serial/libifdvpcd*"))
    assert "python3-lgpio is not in this distribution's archive; skipped" in build_log
    assert not list(root.glob("usr/bin/gcc*"))


def test_image_kiosk_config_check_passes_inside(image, tmp_path):
    root, _ = image
    (root / "tmp/kiosk.toml").write_text(VALID_TOML, encoding="utf-8")
    done = in_image(root, "/opt/kiosk/current/bin/kiosk", "config", "check", "/tmp/kiosk.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    broken = VALID_TOML.replace("lon = 100.5215", "lon = 10")
    (root / "tmp/kiosk.toml").write_text(broken, encoding="utf-8")
    done = in_image(root, "/opt/kiosk/current/bin/kiosk", "config", "check", "/tmp/kiosk.toml")
    assert done.returncode == 1 and "kiosk.lon" in done.stdout


def test_image_firstboot_applies_inside_onto_the_data_link(image):
    root, _ = image
    boot = root / "boot/firmware"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "kiosk.toml").write_text(VALID_TOML, encoding="utf-8")
    (boot / "mqtt-password").write_text("pw-in-image\n")
    done = in_image(root, "/opt/kiosk/current/bin/kiosk", "firstboot")
    assert done.returncode == 0, done.stdout + done.stderr
    secret = root / "var/lib/kiosk/config/credentials/password"
    assert secret.stat().st_uid == 0 and secret.stat().st_mode & 0o077 == 0
    kiosk_uid = int(in_image(root, "id", "-u", "kiosk").stdout)
    assert (root / "var/lib/kiosk/state").stat().st_uid == kiosk_uid
    timesyncd = root / "etc/systemd/timesyncd.conf.d/kiosk.conf"
    assert "NTP=ntp1.example.go.th" in timesyncd.read_text()
    assert sorted(p.name for p in boot.iterdir()) == ["kiosk.toml.applied"]


def test_image_firewall_rules_load_inside(image):
    # Booting the arm64 image showed nft refusing the file: the image has no /etc/protocols, so
    # a protocol name in it cannot resolve. Checked in the image's own root, in a private netns.
    root, _ = image
    done = subprocess.run(["unshare", "--net", "chroot", str(root), "/usr/sbin/nft", "-c", "-f",
                           "/etc/nftables.conf"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
