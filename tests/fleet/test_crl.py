"""``kiosk-fleet crl``: the CA's revocation list issued from ``kiosk_cert``, numbered, written
atomically, issued again only when due; its errors name the file and the fix. The broker's
side of the CRL is tests/rigs/test_broker_revoke.py."""

import argparse
import datetime as dt
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk.cli import run_verbs
from kiosk.errors import ProvisionError
from kiosk.fleet import crl
from kiosk.fleet.ca import load_ca
from kiosk.fleet.cli import VERBS
from kiosk.fleet.db import open_database

NOW = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)
DAY_S = 86400.0


def make_ca(folder, name="CITIZENinfo test CA"):
    """An agency CA (P-256, self-signed) written as ``ca.crt``/``ca.key`` under ``folder``;
    returns the two paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder / "ca.crt", folder / "ca.key"


@pytest.fixture
def issuer(tmp_path):
    """``(fleet_db, ca, crl_file)``: a fleet database with three certificates of two kiosks,
    one revoked, and a CA."""
    fleet_db = open_database(tmp_path / "fleet.sqlite3")
    for kiosk_id, serial in (("k1", "0A1B"), ("k1", "7f3c"), ("k2", "99")):
        fleet_db.add_certificate(kiosk_id, serial=serial, not_before=NOW,
                                 not_after=NOW + dt.timedelta(days=365), issued=NOW)
    fleet_db.KioskCert.update(revoked="2026-11-30T10:00:00.000Z").where(
        fleet_db.KioskCert.serial == "7f3c").execute()
    yield fleet_db, load_ca(*make_ca(tmp_path / "ca")), tmp_path / "broker" / "ca.crl"
    fleet_db.close()


def read_crl(path):
    return x509.load_pem_x509_crl(path.read_bytes())


def test_crl_lists_the_revoked_serials_signed_numbered_and_recorded(issuer):
    fleet_db, (ca_cert, ca_key), crl_file = issuer
    crl_file.parent.mkdir()
    row = crl.issue(fleet_db, ca_cert, ca_key, crl_file, valid_s=30 * DAY_S, now=NOW)
    issued = read_crl(crl_file)
    assert [r.serial_number for r in issued] == [0x7F3C]
    assert issued.get_revoked_certificate_by_serial_number(0x7F3C).revocation_date_utc == (
        dt.datetime(2026, 11, 30, 10, 0, tzinfo=dt.UTC))
    assert issued.is_signature_valid(ca_cert.public_key())
    assert issued.issuer == ca_cert.subject
    assert issued.next_update_utc - issued.last_update_utc == dt.timedelta(days=30)
    assert issued.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert (row.number, row.revoked_count, row.next_update) == (
        1, 1, "2026-12-31T03:00:00.000Z")
    assert oct(crl_file.stat().st_mode & 0o777) == "0o644"  # the broker's user reads it
    assert sorted(p.name for p in crl_file.parent.iterdir()) == ["ca.crl"]  # no temp left

    fleet_db.KioskCert.update(revoked="2026-12-01T03:00:00.000Z").where(
        fleet_db.KioskCert.kiosk_id == "k2").execute()
    later = crl.issue(fleet_db, ca_cert, ca_key, crl_file, valid_s=DAY_S,
                      now=NOW + dt.timedelta(hours=1))
    assert later.number == 2 and sorted(r.serial_number for r in read_crl(crl_file)) == [
        0x99, 0x7F3C]
    assert crl.newest(fleet_db).number == 2


def test_crl_refresh_issues_only_when_due_or_forced(issuer):
    fleet_db, (ca_cert, ca_key), crl_file = issuer
    crl_file.parent.mkdir()
    options = {"valid_s": 30 * DAY_S, "reissue_before_s": 15 * DAY_S}
    assert crl.refresh(fleet_db, ca_cert, ca_key, crl_file, now=NOW, **options).number == 1
    fourteen_days = NOW + dt.timedelta(days=14)
    assert crl.refresh(fleet_db, ca_cert, ca_key, crl_file, now=fourteen_days,
                       **options) is None  # 16 days left
    assert crl.refresh(fleet_db, ca_cert, ca_key, crl_file, now=fourteen_days, force=True,
                       **options).number == 2
    sixteen_days_later = fourteen_days + dt.timedelta(days=16)  # 14 left of the second
    assert crl.refresh(fleet_db, ca_cert, ca_key, crl_file, now=sixteen_days_later,
                       **options).number == 3


def test_crl_errors_name_the_file_and_the_fix(issuer, tmp_path):
    fleet_db, (ca_cert, ca_key), _ = issuer
    other_crt, other_key = make_ca(tmp_path / "other", "another CA")
    with pytest.raises(ProvisionError, match=r"--ca .*missing\.crt: not a readable PEM"):
        load_ca(tmp_path / "missing.crt", other_key)
    with pytest.raises(ProvisionError, match=r"--ca-key .*other/ca\.key is not the key of --ca"):
        load_ca(tmp_path / "ca" / "ca.crt", other_key)
    with pytest.raises(ProvisionError, match=r"--crl-file .*nowhere/ca\.crl: its folder"):
        crl.issue(fleet_db, ca_cert, ca_key, tmp_path / "nowhere" / "ca.crl", valid_s=60)
    assert crl.newest(fleet_db) is None  # a CRL that could not be written is not recorded
    with pytest.raises(ProvisionError, match=r"--reload-pid-file .*: cannot signal"):
        crl.reload_broker(pid_file=tmp_path / "missing.pid")
    with pytest.raises(ProvisionError, match=r"--reload-command 'false' exited 1"):
        crl.reload_broker(command="false")
    assert crl.reload_broker() is None


def test_crl_reload_sends_sighup_to_the_pid_in_the_file(tmp_path):
    waiter = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "broker.pid").write_text(f"{waiter.pid}\n")
        assert crl.reload_broker(pid_file=tmp_path / "broker.pid") == (
            f"sent SIGHUP to the broker (pid {waiter.pid})")
        assert waiter.wait(5) == -signal.SIGHUP
    finally:
        if waiter.poll() is None:
            os.kill(waiter.pid, signal.SIGKILL)
            waiter.wait()


def test_crl_verbs_refresh_and_show(issuer, tmp_path, capsys):
    fleet_db, _, crl_file = issuer
    crl_file.parent.mkdir()
    db = str(tmp_path / "fleet.sqlite3")
    files = ["--db", db, "--ca", str(tmp_path / "ca/ca.crt"), "--ca-key",
             str(tmp_path / "ca/ca.key"), "--crl-file", str(crl_file)]
    assert run_verbs("kiosk-fleet", VERBS, ["crl", "show", "--db", db]) == 0
    assert "no CRL issued yet" in capsys.readouterr().out
    assert run_verbs("kiosk-fleet", VERBS, ["crl", "refresh", *files, "--valid-s", "600"]) == 0
    out = capsys.readouterr().out
    assert "issued CRL 1: 1 revoked" in out and "broker not reloaded" in out
    assert run_verbs("kiosk-fleet", VERBS, ["crl", "refresh", *files,
                                            "--reissue-before-s", "60"]) == 0
    assert capsys.readouterr().out.startswith("not due: CRL 1")
    assert run_verbs("kiosk-fleet", VERBS, ["crl", "refresh", *files,
                                            "--reissue-before-days", "1"]) == 0
    assert "issued CRL 2" in capsys.readouterr().out  # 600 s left, under a day
    assert run_verbs("kiosk-fleet", VERBS, ["crl", "show", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("CRL 2: 1 revoked")
    assert run_verbs("kiosk-fleet", VERBS, ["crl", "refresh", *files, "--valid-s", "0"]) == 1
    assert "--valid-days/--valid-s: 0 s must be above 0" in capsys.readouterr().err


def test_crl_refresh_unit_runs_the_verb_with_options_it_has():
    """The broker host's unit (provisioning/broker/) names only options ``crl refresh`` takes."""
    unit = (Path(__file__).resolve().parents[2]
            / "provisioning/broker/kiosk-crl-refresh.service").read_text()
    command = re.search(r"^ExecStart=(.*?[^\\])$", unit.replace("\\\n", " "), re.M).group(1)
    argv = shlex.split(command.replace("${KIOSK_FLEET_DB}", "postgresql:///fleet"))
    assert argv[:3] == ["/opt/kiosk-fleet/venv/bin/kiosk-fleet", "crl", "refresh"]
    parser = argparse.ArgumentParser()
    crl.add_arguments(parser)
    args = parser.parse_args(argv[2:])
    assert args.reload_command == "systemctl reload mosquitto"
    timer = (Path(__file__).resolve().parents[2]
             / "provisioning/broker/kiosk-crl-refresh.timer").read_text()
    assert "OnUnitActiveSec=1h" in timer and "Unit=kiosk-crl-refresh.service" in timer
