"""``kiosk-fleet revoke``'s edges on real files and a real SQLite store: what it records, what it
rewrites, that a second run changes nothing, and the errors that name the value and the fix.
The broker's side (kick, refusals, retained messages) is tests/rigs/test_broker_revoke.py."""

import datetime as dt
import os

import pytest

from kiosk.cli import run_verbs
from kiosk.fleet.cli import VERBS
from kiosk.fleet.db import open_database
from tests.fleet.test_crl import make_ca

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def files(tmp_path):
    """A store where k1 has an open alarm and a certificate, a password file with k2 and k3
    (mode 0600), and the CA; ``run(*argv) -> (exit code, out, err)``."""
    db_path = tmp_path / "fleet.sqlite3"
    fleet_db = open_database(db_path)
    fleet_db.KioskRow.create(kiosk_id="k1", reader="no_reader")
    fleet_db.AlarmEvent.create(kiosk_id="k1", kind="reader_missing", detail="reader no_reader",
                               raised="2026-12-01T00:00:00.000Z")
    fleet_db.add_certificate("k1", serial="C0FFEE", not_before=NOW,
                             not_after=NOW + dt.timedelta(days=365), issued=NOW)
    fleet_db.close()
    passwd = tmp_path / "passwd"
    passwd.write_text("k2:$7$101$aaa$bbb\nk3:$7$101$ccc$ddd\n")
    os.chmod(passwd, 0o600)
    ca, ca_key = make_ca(tmp_path / "ca")
    return {"db": db_path, "passwd": passwd, "revoked": tmp_path / "revoked",
            "ca": ["--ca", str(ca), "--ca-key", str(ca_key), "--crl-file",
                   str(tmp_path / "ca.crl")]}


@pytest.fixture
def run(files, capsys):
    def run(*argv):
        code = run_verbs("kiosk-fleet", VERBS, ["revoke", *argv, "--db", str(files["db"])])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_revoke_a_password_kiosk_twice_rewrites_once_and_keeps_the_file_mode(files, run):
    argv = ("k2", "--passwd", str(files["passwd"]), "--revoked-file", str(files["revoked"]),
            "--reason", "counter closed", "--reload-command", "true")
    code, out, _ = run(*argv)
    assert code == 0
    assert "removed its line from" in out and "listed it in" in out
    assert "no certificate newly revoked (0 recorded)" in out
    assert "ran 'true'" in out
    assert files["passwd"].read_text() == "k3:$7$101$ccc$ddd\n"
    assert oct(files["passwd"].stat().st_mode & 0o777) == "0o600"
    assert files["revoked"].read_text() == "k2\n"
    fleet_db = open_database(files["db"])
    retired = fleet_db.KioskRow.get_by_id("k2").retired  # made: the collector never heard it
    fleet_db.close()

    code, out, _ = run(*argv)
    assert code == 0 and "no line for it in" in out and "already listed in" in out
    assert files["revoked"].read_text() == "k2\n"
    fleet_db = open_database(files["db"])
    assert fleet_db.KioskRow.get_by_id("k2").retired == retired  # the first date stays
    assert [(a.kind, a.count, a.detail) for a in fleet_db.alarms("k2")] == [
        ("revoked", 2, "revoked: counter closed")]
    fleet_db.close()


def test_revoke_a_certificate_kiosk_marks_it_issues_the_crl_and_clears_its_alarms(files, run):
    code, out, err = run("k1", *files["ca"], "--revoked-file", str(files["revoked"]))
    assert code == 1  # done, but the broker was not reloaded: said, and not a success
    assert "certificates revoked: c0ffee" in out and "issued CRL 1: 1 revoked" in out
    assert "the broker was not reloaded" in err and "the kiosk stays connected" in err
    fleet_db = open_database(files["db"])
    assert fleet_db.certificates("k1")[0].revoked is not None
    assert fleet_db.alarm_events("k1", open_only=True) == []
    fleet_db.close()
    code, out, _ = run("k1", *files["ca"], "--revoked-file", str(files["revoked"]),
                       "--reload-command", "true")
    assert code == 0 and "no certificate newly revoked (1 recorded)" in out
    assert "issued CRL 2: 1 revoked" in out


@pytest.mark.parametrize(("argv", "message"), [
    (("ops",), "'ops' is a fleet account (ops, ca, collector*), not a kiosk"),
    (("ca",), "'ca' is a fleet account"),
    (("collector-2",), "'collector-2' is a fleet account"),
    (("k/1",), "'k/1': kiosk id must be"),
    (("k9",), "kiosk 'k9' is neither in the fleet database"),
    (("k1",), "kiosk 'k1' has 1 client certificate(s): give --ca, --ca-key and --crl-file"),
    (("k1", "--ca", "ca.crt"), "--ca, --ca-key and --crl-file go together"),
    (("k2", "--passwd", "/nonexistent/passwd"), "--passwd /nonexistent/passwd: no such file"),
    (("k2", "--revoked-file", "/nonexistent/revoked"), "--revoked-file /nonexistent/revoked: "
                                                       "its folder does not exist"),
    (("k2", "--reload-pid-file", "/nonexistent/pid"), "--reload-pid-file /nonexistent/pid"),
    (("k2",), "--revoked-file is required: the CRL and the password file are checked at "
              "connect only"),
])
def test_revoke_refuses_with_an_error_naming_the_value_and_the_fix(files, run, argv, message):
    if argv[0] == "k2" and "--passwd" not in argv:
        argv = (*argv, "--passwd", str(files["passwd"]))
    if "--revoked-file" not in message:  # else the case is about that very option
        argv = (*argv, "--revoked-file", str(files["revoked"]))
    code, _, err = run(*argv)
    assert code == 1 and message in err, err
