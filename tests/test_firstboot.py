"""`kiosk firstboot` against a temporary root, data partition and boot partition."""

import argparse
import os
import stat
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from kiosk import config as config_module
from kiosk import firstboot, gpio
from kiosk.errors import ProvisionError
from kiosk.renewal import files
from tests.fixtures.appliance import VALID_TOML


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


KIOSK_UID, KIOSK_GID = 4242, 4343


def with_kiosk_user(appliance):
    (appliance.root / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\n"
        f"kiosk:x:{KIOSK_UID}:{KIOSK_GID}::/var/lib/kiosk/state:/usr/sbin/nologin\n")


def kiosk_may_change(path):
    """True if the kiosk account owns ``path`` or may write to it (as owner, group or other)."""
    info = path.lstat()
    return (info.st_uid == KIOSK_UID or info.st_mode & stat.S_IWOTH != 0
            or (info.st_gid == KIOSK_GID and info.st_mode & stat.S_IWGRP != 0))


def test_firstboot_kiosk_user_cannot_change_what_root_reads(appliance):
    """A compromised kiosk process must not swap the config, the credentials or the NTP drop-in:
    nothing on their path, from the data partition's top down, is the kiosk's to change."""
    with_kiosk_user(appliance)
    drop(appliance)
    (appliance.boot / "mqtt-client.key").write_text("-----BEGIN PRIVATE KEY-----\nx\n")
    assert run_verb(appliance) == 0
    config = appliance.data / "config"
    read_by_root = [config / "kiosk.toml", config / "timesyncd.conf",
                    config / "credentials/password", config / "credentials/client.key"]
    for target in read_by_root:
        on_the_path = [target, *target.parents[:len(target.relative_to(appliance.data).parts)]]
        assert on_the_path[-1] == appliance.data
        changeable = [str(p) for p in on_the_path if kiosk_may_change(p)]
        assert changeable == [], f"the kiosk user could replace {target} through {changeable}"
    credentials = config / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700 and credentials.stat().st_uid == 0


def test_firstboot_gives_only_the_state_folder_to_the_kiosk_user(appliance):
    """mkfs leaves the partition's top folder to root; the kiosk gets one folder for its
    database, remote config layer and prompt cache, and the default data_dir is that folder."""
    with_kiosk_user(appliance)
    drop(appliance)
    assert run_verb(appliance) == 0
    top = appliance.data.stat()
    assert (top.st_uid, stat.S_IMODE(top.st_mode)) == (0, 0o755)
    state = (appliance.data / "state").stat()
    assert (state.st_uid, state.st_gid, stat.S_IMODE(state.st_mode)) == (KIOSK_UID, KIOSK_GID,
                                                                          0o700)
    assert config_module.parse(VALID_TOML).storage.data_dir == "/var/lib/kiosk/state"


def test_firstboot_makes_the_certificate_renewal_folders_root_s(appliance):
    """kiosk cert keeps the pending key in a private folder beside the credentials, and the
    request and install record where the kiosk may read them but replace nothing."""
    with_kiosk_user(appliance)
    drop(appliance)
    assert run_verb(appliance) == 0
    for folder, mode in ((appliance.data / "config/renewal", 0o700),
                         (appliance.data / "renewal", 0o755)):
        info = folder.lstat()
        assert stat.S_ISDIR(info.st_mode) and not kiosk_may_change(folder), folder
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, mode), folder
    # The folders kiosk cert uses (/etc/kiosk is the image's link to the partition's config/).
    assert files.RENEWAL_DIR == Path("/var/lib/kiosk/renewal")
    assert files.PENDING_KEY.parent == Path("/etc/kiosk/renewal")


def test_firstboot_takes_back_a_folder_the_old_layout_gave_the_kiosk_user(appliance):
    """Before, the kiosk owned the partition's top and could have put a link where config/ is."""
    with_kiosk_user(appliance)
    os.chown(appliance.data, KIOSK_UID, KIOSK_GID)
    elsewhere = appliance.base / "elsewhere"
    elsewhere.mkdir()
    (appliance.data / "config").symlink_to(elsewhere)
    drop(appliance)
    assert run_verb(appliance) == 0
    assert list(elsewhere.iterdir()) == []
    assert not (appliance.data / "config").is_symlink()
    assert (appliance.data / "config/kiosk.toml").stat().st_uid == 0
    assert appliance.data.stat().st_uid == 0


@pytest.mark.parametrize("data_dir", ["/var/lib/kiosk", "/tmp/kiosk", "/var/lib/other"])
def test_firstboot_refuses_a_data_dir_outside_the_state_folder(appliance, data_dir):
    """First boot chowns data_dir's folder to the kiosk user: only the state folder may be given
    away (and only it is writable under kiosk.service's ReadWritePaths=)."""
    drop(appliance, VALID_TOML + f'\n[storage]\ndata_dir = "{data_dir}"\n')
    with pytest.raises(ProvisionError, match="storage.data_dir: .*/var/lib/kiosk/state"):
        firstboot.apply(appliance.boot, appliance.root)


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

    real_show_fault_light = gpio.show_fault_light
    monkeypatch.setattr(gpio, "show_fault_light", record)
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


def test_firstboot_installs_the_release_servers_ca_for_the_updater(appliance):
    """An agency whose release server has a private CA drops update-ca.crt beside kiosk.toml;
    the root updater finds it at /etc/kiosk/update-ca.crt. Something else is refused."""
    drop(appliance)
    (appliance.boot / "update-ca.crt").write_text("not a certificate\n")
    with pytest.raises(ProvisionError, match="update-ca.crt: .* is not a PEM certificate"):
        firstboot.apply(appliance.boot, appliance.root)
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    (appliance.boot / "update-ca.crt").write_text(pem)
    assert run_verb(appliance) == 0
    installed = appliance.data / "config/update-ca.crt"
    assert installed.read_text() == pem and installed.stat().st_mode & 0o777 == 0o644
    assert installed.stat().st_uid == 0 and not (appliance.boot / "update-ca.crt").exists()
