"""Checked by tools, not eyes: shellcheck on every script, systemd-analyze on every unit."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kiosk import config
from kiosk.renewal import files
from kiosk.update import request
from tests.fixtures.appliance import VALID_TOML

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
MAX_EXPOSURE = 4.0


def shell_scripts():
    """Every file in the repo whose first line names sh or bash (tracked or not yet)."""
    skip = {".git", ".venv", ".cache", "node_modules"}
    found = []
    for path in sorted(ROOT.rglob("*")):
        if skip & set(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        try:
            with path.open("rb") as handle:
                first = handle.readline(200)
        except OSError:
            continue
        if re.match(rb"#!\s*/(usr/)?bin/((env\s+)?(ba)?sh|busybox\s+sh)\b", first):
            found.append(path)
    return found


def test_units_shell_scripts_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {"dev", "provisioning/chroot_script", "provisioning/build-wheelhouse",
            "provisioning/apply-to-root", "provisioning/image/build",
            "provisioning/image/wheelhouse", "provisioning/image/init",
            "provisioning/filesystem/opt/kiosk/bin/kiosk-report"} <= names


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck is not installed")
@pytest.mark.parametrize("script", [str(p.relative_to(ROOT)) for p in shell_scripts()])
def test_units_every_shell_script_passes_shellcheck(script):
    done = subprocess.run(["shellcheck", "-x", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def offline_security_supported():
    if not shutil.which("systemd-analyze"):
        return False
    help_text = subprocess.run(["systemd-analyze", "--help"], capture_output=True, text=True).stdout
    return "--offline" in help_text


@pytest.mark.skipif(not offline_security_supported(),
                    reason="systemd-analyze without --offline (needs systemd >= 250)")
@pytest.mark.parametrize("unit", sorted(p.name for p in SYSTEMD.glob("*.service")))
def test_units_every_service_exposure_is_at_most_four(unit):
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           str(SYSTEMD / unit)], capture_output=True, text=True, timeout=60)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("unit", ["kiosk.service", "kiosk-updater.service", "kiosk-cert.service"])
def test_units_security_record_matches_the_unit(unit):
    """docs/security.md records the current score, not an old one."""
    record = (ROOT / "docs/security.md").read_text(encoding="utf-8")
    recorded = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d)", record)
    assert recorded and float(recorded.group(1)) <= MAX_EXPOSURE
    if offline_security_supported():
        done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                               str(SYSTEMD / unit)], capture_output=True, text=True,
                              timeout=60)
        assert recorded.group(0) in done.stdout


def test_units_kiosk_service_keeps_the_pi_working():
    """Settings that would score better but break the display, input, GPIO or libffi."""
    unit = (SYSTEMD / "kiosk.service").read_text()
    settings = {line.split("=", 1)[0] for line in unit.splitlines()
                if "=" in line and not line.startswith("#")}
    assert not {"PrivateUsers", "PrivateDevices", "MemoryDenyWriteExecute"} & settings
    for needed in ("Type=notify", "WatchdogSec=", "Restart=always", "StartLimitAction=reboot",
                   "DevicePolicy=closed", "DeviceAllow=char-drm", "DeviceAllow=char-input",
                   "DeviceAllow=char-gpiochip", "DeviceAllow=char-alsa", "LoadCredential=",
                   "SDL_VIDEODRIVER=kmsdrm", "User=kiosk"):
        assert needed in unit, needed


@pytest.mark.parametrize("name", ["kiosk.service", "kiosk-out-of-order.service"])
def test_units_draw_through_opengl_es_on_kms(name):
    """SDL's default renderer on KMS/DRM, desktop OpenGL, showed a black screen on the booted
    image; both units that draw must present through OpenGL ES 2."""
    environment = " ".join(line.split("=", 1)[1] for line in
                           (SYSTEMD / name).read_text().splitlines()
                           if line.startswith("Environment="))
    assert {"SDL_VIDEODRIVER=kmsdrm",
            "SDL_FRAMEBUFFER_ACCELERATION=opengles2"} <= set(environment.split())


def test_units_hardware_watchdog_is_at_most_fourteen_seconds():
    conf = (ROOT / "provisioning/filesystem/etc/systemd/system.conf.d/kiosk-watchdog.conf")
    seconds = re.search(r"^RuntimeWatchdogSec=(\d+)s$", conf.read_text(), re.M)
    assert seconds and 0 < int(seconds.group(1)) <= 14


def test_units_kiosk_service_writes_only_its_state_folder():
    """The config, the NTP drop-in and the credentials beside the state folder stay read-only."""
    unit = (SYSTEMD / "kiosk.service").read_text()
    writable = [line.split("=", 1)[1] for line in unit.splitlines()
                if line.startswith(("ReadWritePaths=", "StateDirectory="))]
    assert writable == [config.parse(VALID_TOML).storage.data_dir] == ["/var/lib/kiosk/state"]


def unit_lines(name, key):
    """The values of ``key=`` in ``systemd/name``, in order (each of a list's words apart)."""
    lines = (SYSTEMD / name).read_text().splitlines()
    return [word for line in lines if line.startswith(f"{key}=")
            for word in line.split("=", 1)[1].split()]


def test_units_only_the_updater_writes_the_slots():
    """/opt/kiosk holds the code every unit runs: the root updater alone may write it. The
    others run under ProtectSystem=strict (the whole OS read-only) and name nothing under
    /opt/kiosk writable, so a hijacked kiosk user cannot change the code root will run."""
    for unit in sorted(p.name for p in SYSTEMD.glob("*.service")):
        writable = unit_lines(unit, "ReadWritePaths")
        if unit == "kiosk-updater.service":
            assert "/opt/kiosk" in writable
            continue
        assert unit_lines(unit, "ProtectSystem") == ["strict"], unit
        assert not [p for p in writable if p.lstrip("-+").startswith("/opt")], (unit, writable)


def test_units_updater_acts_on_the_request_the_kiosk_writes():
    """The path unit watches, and the service reads, the very file kiosk.telemetry.commands
    writes in the kiosk's state folder; the service is root's, sandboxed, and needs D-Bus
    (AF_UNIX) and a network to reach systemd and the release server."""
    data_dir = config.parse(VALID_TOML).storage.data_dir
    asked = f"{data_dir}/{request.REQUEST}"
    assert unit_lines("kiosk-updater.path", "PathChanged") == [asked]
    assert unit_lines("kiosk-updater.path", "PathExists") == []  # it would start it in a loop
    assert unit_lines("kiosk-updater.path", "Unit") == ["kiosk-updater.service"]
    assert unit_lines("kiosk-updater.service", "ExecStart") == [
        "/opt/kiosk/current/bin/kiosk", "update", "--request", asked]
    assert unit_lines("kiosk-updater.service", "Type") == ["oneshot"]
    assert unit_lines("kiosk-updater.service", "User") == []  # root: it writes the slots
    assert unit_lines("kiosk-updater.service", "ProtectSystem") == ["strict"]
    assert set(unit_lines("kiosk-updater.service", "ReadWritePaths")) == {"/opt/kiosk",
                                                                         data_dir}
    assert unit_lines("kiosk-updater.service", "StateDirectory") == ["kiosk/downloads"]
    assert set(unit_lines("kiosk-updater.service", "CapabilityBoundingSet")) == {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE"}
    assert unit_lines("kiosk-updater.service", "NoNewPrivileges") == ["yes"]
    assert unit_lines("kiosk-updater.service", "PrivateNetwork") == []
    assert set(unit_lines("kiosk-updater.service", "RestrictAddressFamilies")) == {
        "AF_UNIX", "AF_INET", "AF_INET6"}
    # The kiosk user must read and run what the updater installs.
    assert unit_lines("kiosk-updater.service", "UMask") == ["0022"]


def test_units_cert_renewal_reads_the_response_the_kiosk_writes_and_writes_only_root_s_files():
    """The path unit watches, and the service reads by default, the very file the kiosk leaves
    in its state folder; the service is root's with no network, writes only the credentials and
    the renewal's two folders, and may only read past the kiosk user's permissions."""
    data_dir = config.parse(VALID_TOML).storage.data_dir
    assert unit_lines("kiosk-cert.path", "PathChanged") == [str(files.response_path(data_dir))]
    assert unit_lines("kiosk-cert.path", "PathExists") == []  # it would start it in a loop
    assert unit_lines("kiosk-cert.path", "Unit") == ["kiosk-cert.service"]
    assert unit_lines("kiosk-cert.service", "ExecStart") == ["/opt/kiosk/current/bin/kiosk",
                                                             "cert"]
    assert unit_lines("kiosk-cert.service", "Type") == ["oneshot"]
    assert unit_lines("kiosk-cert.service", "User") == []  # root: it writes root's credentials
    assert unit_lines("kiosk-cert.service", "ProtectSystem") == ["strict"]
    writable = {str(files.CREDENTIALS_DIR), str(files.PENDING_KEY.parent),
                str(files.RENEWAL_DIR)}
    assert set(unit_lines("kiosk-cert.service", "ReadWritePaths")) == writable
    assert not {"StateDirectory", "ConfigurationDirectory", "RuntimeDirectory"} & {
        line.split("=", 1)[0] for line in (SYSTEMD / "kiosk-cert.service").read_text().split()}
    # The folders made before the sandbox, by the one command with no input at all.
    made = [words[-1] for words in (line.split() for line in
            (SYSTEMD / "kiosk-cert.service").read_text().splitlines()
            if line.startswith("ExecStartPre="))]
    assert set(made) == writable - {str(files.CREDENTIALS_DIR)}
    assert unit_lines("kiosk-cert.service", "CapabilityBoundingSet") == ["CAP_DAC_READ_SEARCH"]
    assert unit_lines("kiosk-cert.service", "NoNewPrivileges") == ["yes"]
    assert unit_lines("kiosk-cert.service", "PrivateNetwork") == ["yes"]
    assert unit_lines("kiosk-cert.service", "IPAddressDeny") == ["any"]
    assert unit_lines("kiosk-cert.service", "RestrictAddressFamilies") == ["none"]
    assert unit_lines("kiosk-cert.service", "UMask") == ["0077"]


def test_units_cert_renewal_runs_after_boot_daily_and_is_enabled_in_the_image():
    assert unit_lines("kiosk-cert.timer", "Unit") == ["kiosk-cert.service"]
    assert unit_lines("kiosk-cert.timer", "OnBootSec") == ["5min"]
    assert unit_lines("kiosk-cert.timer", "OnUnitInactiveSec") == ["1d"]
    enabled = re.search(r"^systemctl enable ((?:.*\\\n)*.*)$",
                        (ROOT / "provisioning/chroot_script").read_text(), re.M)
    assert {"kiosk-cert.path", "kiosk-cert.timer"} <= set(enabled.group(1).split())
    assert "kiosk-cert.service" not in enabled.group(1)  # no [Install]: the timer and path start it
