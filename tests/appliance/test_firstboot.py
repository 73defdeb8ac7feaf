"""`kiosk firstboot` against a temporary root, data partition and boot partition."""

import argparse
import os
import stat

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk import firstboot
from kiosk.errors import ProvisionError
from tests.appliance.conftest import VALID_TOML


def drop(appliance, toml=VALID_TOML, password="s3cret-for-bkk-bangrak-01\n"):
    (appliance.boot / "kiosk.toml").write_text(toml, encoding="utf-8")
    if password is not None:
        (appliance.boot / "mqtt-password").write_text(password)


def run_verb(appliance):
    args = argparse.Namespace(boot=str(appliance.boot), root=str(appliance.root), user="kiosk")
    return firstboot.main(args)


def test_firstboot_valid_file_is_applied_to_the_data_partition(appliance):
    drop(appliance)
    assert run_verb(appliance) == 0
    config = appliance.data / "config"
    assert (config / "kiosk.toml").read_text(encoding="utf-8") == VALID_TOML
    assert (config / "credentials/password").read_text() == "s3cret-for-bkk-bangrak-01\n"
    assert "NTP=ntp1.example.go.th time.navy.mi.th" in (config / "timesyncd.conf").read_text()
    assert (appliance.boot / "kiosk.toml.applied").exists()
    assert not (appliance.boot / "kiosk.toml").exists()


def test_firstboot_secrets_are_private_and_gone_from_the_boot_folder(appliance):
    drop(appliance)
    (appliance.boot / "mqtt-client.key").write_text("-----BEGIN PRIVATE KEY-----\nx\n")
    assert run_verb(appliance) == 0
    assert sorted(p.name for p in appliance.boot.iterdir()) == ["kiosk.toml.applied"]
    credentials = appliance.data / "config/credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    for name in ("password", "client.key"):
        assert stat.S_IMODE((credentials / name).stat().st_mode) == 0o600


def test_firstboot_credentials_belong_to_the_kiosk_user(appliance):
    (appliance.root / "etc/passwd").write_text(
        f"root:x:0:0::/root:/bin/sh\nkiosk:x:{os.getuid()}:{os.getgid()}::/var/lib/kiosk:/usr/sbin/nologin\n")
    drop(appliance)
    assert run_verb(appliance) == 0
    installed = appliance.data / "config/credentials/password"
    assert (installed.stat().st_uid, installed.stat().st_gid) == (os.getuid(), os.getgid())


def test_firstboot_gives_the_data_partition_to_the_kiosk_user(appliance):
    """mkfs leaves the partition's top folder to root; the kiosk must create its database."""
    (appliance.root / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nkiosk:x:4242:4343::/var/lib/kiosk:/usr/sbin/nologin\n")
    drop(appliance)
    assert run_verb(appliance) == 0
    info = appliance.data.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4242, 4343, 0o751)


def test_firstboot_invalid_file_is_refused_naming_the_key(appliance, caplog):
    drop(appliance, VALID_TOML.replace("lat = 13.7294", "lat = 51.5"))
    assert run_verb(appliance) == 1
    assert "kiosk.lat" in caplog.text and "51.5" in caplog.text
    assert appliance.files_in_data() == ["firstboot-problems.txt"]
    assert "kiosk.lat" in (appliance.data / "firstboot-problems.txt").read_text()
    # Everything stays on the boot partition for the agency to fix and reboot.
    assert sorted(p.name for p in appliance.boot.iterdir()) == [
        "kiosk.toml", "kiosk.toml.problems.txt", "mqtt-password"]


def test_firstboot_missing_credential_is_refused(appliance):
    drop(appliance, password=None)
    with pytest.raises(ProvisionError, match="mqtt.password_file.*mqtt-password is missing"):
        firstboot.apply(appliance.boot, appliance.root)
    assert appliance.files_in_data() == ["firstboot-problems.txt"]


def test_firstboot_broken_toml_and_non_utf8_are_refused(appliance):
    drop(appliance, 'kiosk = "unclosed\n')
    with pytest.raises(ProvisionError, match="not valid TOML"):
        firstboot.apply(appliance.boot, appliance.root)
    (appliance.boot / "kiosk.toml").write_bytes("name_th = 'บางรัก'".encode("cp874"))
    with pytest.raises(ProvisionError, match="not UTF-8"):
        firstboot.apply(appliance.boot, appliance.root)


def test_firstboot_refusal_lights_the_fault_led(appliance, monkeypatch):
    lit = {}

    def record(gpio):
        panel = real_show_fault_light(gpio)
        lit["state"] = panel.lights["fault"].is_lit
        lit["factory"] = panel._factory

    real_show_fault_light = firstboot.show_fault_light
    monkeypatch.setattr(firstboot, "show_fault_light", record)
    drop(appliance, VALID_TOML.replace('no_copy = "cancelled"', 'no_copy = "maybe"'))
    assert run_verb(appliance) == 1
    assert lit["state"] is True and isinstance(lit["factory"], MockFactory)


def test_firstboot_config_survives_a_reboot_with_a_fresh_root(appliance):
    drop(appliance)
    assert run_verb(appliance) == 0
    appliance.reboot_with_fresh_root()
    assert run_verb(appliance) == 0  # nothing left to apply: a no-op
    config = appliance.root / "etc/kiosk"
    assert (config / "kiosk.toml").read_text(encoding="utf-8") == VALID_TOML
    assert (config / "credentials/password").read_text() == "s3cret-for-bkk-bangrak-01\n"


def test_firstboot_reapply_keeps_installed_credentials(appliance):
    """A changed kiosk.toml later, without the secret again, still finds the installed one."""
    drop(appliance)
    assert run_verb(appliance) == 0
    drop(appliance, VALID_TOML.replace("Bang Rak District Office", "Bang Rak Office"),
         password=None)
    assert run_verb(appliance) == 0
    assert "Bang Rak Office" in (appliance.data / "config/kiosk.toml").read_text(encoding="utf-8")
    assert (appliance.data / "config/credentials/password").exists()


def test_firstboot_nothing_to_apply_is_success(appliance):
    assert run_verb(appliance) == 0
    assert appliance.files_in_data() == []
