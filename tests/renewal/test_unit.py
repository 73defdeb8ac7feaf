"""``kiosk cert`` on real files, keys and certificates: the request when due, the install of a
matching response, the refusal of anything else."""

import datetime as dt
import json
import logging
import os
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kiosk import cli
from kiosk.renewal import files, unit
from tests.renewal import pki
from tests.renewal.conftest import KIOSK_ID

DAY = dt.timedelta(days=1)
SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def pending_key(world):
    return serialization.load_pem_private_key(world.pending_key.read_bytes(), password=None)


def signed(world, **validity):
    """The signing service's answer to the pending request."""
    validity = validity or {"not_before": world.now - dt.timedelta(minutes=5),
                            "not_after": world.now + 365 * DAY}
    return world.ca.sign_csr(world.csr_pem(), **validity)


def test_unit_due_certificate_makes_a_private_key_and_a_csr_naming_only_the_kiosk(
        renewal_world, caplog):
    caplog.set_level(logging.INFO)
    assert renewal_world.run() == 0
    assert mode(renewal_world.pending_key) == 0o600
    key = pending_key(renewal_world)
    csr = x509.load_pem_x509_csr(renewal_world.csr_pem())
    assert csr.is_signature_valid
    assert csr.subject == pki.name(KIOSK_ID)
    assert csr.subject.rfc4514_string() == f"CN={KIOSK_ID}"
    assert list(csr.extensions) == []
    assert csr.public_key().public_bytes(*SPKI) == key.public_key().public_bytes(*SPKI)
    assert mode(renewal_world.renewal_dir / files.REQUEST_NAME) == 0o644
    # The request changes nothing in use, and no log line holds key material.
    assert renewal_world.cert == x509.load_pem_x509_certificate(
        (renewal_world.credentials / "client.crt").read_bytes())
    assert "made a new key and the request" in caplog.text
    assert "PRIVATE" not in caplog.text and "REQUEST" not in caplog.text


def test_unit_certificate_not_due_changes_nothing(make_renewal_world, caplog):
    world = make_renewal_world(31)
    before = world.snapshot()
    caplog.set_level(logging.INFO)
    assert world.run() == 0
    assert world.snapshot() == before
    assert "renewal is due from" in caplog.text
    assert world.run(later=2 * DAY) == 0  # 29 days left: due
    assert world.pending_key.exists()


def test_unit_matching_response_is_installed_with_the_previous_pair_kept(renewal_world):
    world = renewal_world
    old_cert, old_key = ((world.credentials / name).read_bytes()
                         for name in ("client.crt", "client.key"))
    world.run()
    new_key_pem = world.pending_key.read_bytes()
    new = signed(world)
    world.respond(new)
    assert world.run() == 0
    installed = world.credentials / "client.crt"
    assert x509.load_pem_x509_certificate(installed.read_bytes()) == new
    assert (world.credentials / "client.key").read_bytes() == new_key_pem
    # The previous pair in root's own folder: the kiosk process gets the credentials folder
    # whole (LoadCredential=), and the old key is no business of its.
    kept = world.pending_key.parent
    assert (kept / "client.crt.previous").read_bytes() == old_cert
    assert (kept / "client.key.previous").read_bytes() == old_key
    for path in (world.credentials / "client.crt", world.credentials / "client.key",
                 kept / "client.crt.previous", kept / "client.key.previous"):
        assert mode(path) == 0o600, path
    # Only the files named: no temporary file left beside them.
    assert sorted(p.name for p in world.credentials.iterdir()) == [
        "ca.crt", "client.crt", "client.key"]
    assert sorted(p.name for p in kept.iterdir()) == ["client.crt.previous",
                                                      "client.key.previous"]
    record = json.loads((world.renewal_dir / files.INSTALLED_NAME).read_text())
    assert record == {"serial": f"{new.serial_number:x}",
                      "not_after": new.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                      "installed": world.now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert mode(world.renewal_dir / files.INSTALLED_NAME) == 0o644
    assert not world.pending_key.exists()
    assert not (world.renewal_dir / files.REQUEST_NAME).exists()
    assert world.response.exists()  # the kiosk's file: root leaves it


def other_key(world):
    return world.ca.issue(pki.new_key().public_key(), KIOSK_ID, not_before=world.now - DAY,
                          not_after=world.now + 365 * DAY)


def other_cn(world):
    return world.ca.issue(pending_key(world).public_key(), "bkk-bangrak-02",
                          not_before=world.now - DAY, not_after=world.now + 365 * DAY)


def other_issuer(world):
    return world.ca.issue(pending_key(world).public_key(), KIOSK_ID, not_before=world.now - DAY,
                          not_after=world.now + 365 * DAY, issuer=pki.name("Someone Else CA"))


def forged_issuer(world):
    """Same issuer name, another CA's key: ca.crt in the credentials shows the forgery."""
    forger = pki.Ca(world.ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                    now=world.now)
    return forger.sign_csr(world.csr_pem(), not_before=world.now - DAY,
                           not_after=world.now + 365 * DAY)


def expired(world):
    return signed(world, not_before=world.now - 30 * DAY, not_after=world.now - DAY)


@pytest.mark.parametrize("make, says", [
    (other_key, "for another key"), (other_cn, "names 'bkk-bangrak-02'"),
    (other_issuer, "issued by 'CN=Someone Else CA'"), (forged_issuer, "not signed by its issuer"),
    (expired, "expired")])
def test_unit_response_that_does_not_match_is_refused_and_nothing_changes(
        renewal_world, caplog, make, says):
    renewal_world.run()
    renewal_world.respond(make(renewal_world))
    before = renewal_world.snapshot()
    assert renewal_world.run() == 0
    assert renewal_world.snapshot() == before
    refused = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refused) == 1 and says in refused[0].getMessage(), caplog.text
    # A matching one that comes later is still installed.
    renewal_world.respond(signed(renewal_world))
    assert renewal_world.run() == 0 and not renewal_world.pending_key.exists()


def test_unit_response_valid_only_later_waits(renewal_world, caplog):
    caplog.set_level(logging.INFO)
    renewal_world.run()
    renewal_world.respond(signed(renewal_world, not_before=renewal_world.now + DAY,
                                 not_after=renewal_world.now + 365 * DAY))
    before = renewal_world.snapshot()
    assert renewal_world.run() == 0
    assert renewal_world.snapshot() == before
    assert "left for a later run" in caplog.text
    assert renewal_world.run(later=DAY + dt.timedelta(minutes=1)) == 0
    assert not renewal_world.pending_key.exists()


def test_unit_symlinked_or_oversized_response_is_refused(renewal_world, caplog):
    world = renewal_world
    world.run()
    elsewhere = world.root / "elsewhere.pem"
    elsewhere.write_bytes(pki.pem(signed(world)))
    os.symlink(elsewhere, world.response)
    before = world.snapshot()
    assert world.run() == 0
    assert world.snapshot() == before
    assert "is a symlink: refused" in caplog.text
    world.response.unlink()
    world.response.write_bytes(b"#" * files.MAX_RESPONSE_BYTES + b"\n" + pki.pem(signed(world)))
    before = world.snapshot()
    assert world.run() == 0
    assert world.snapshot() == before
    assert f"is over {files.MAX_RESPONSE_BYTES} bytes: refused" in caplog.text


@pytest.mark.parametrize("content, says", [
    (b"not a certificate\n", "is not a PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "is not a PEM certificate"),
    (None, "holds 2 certificates")])
def test_unit_response_that_is_not_one_certificate_is_refused_in_a_clear_line(
        renewal_world, caplog, content, says):
    renewal_world.run()
    if content is None:
        content = pki.pem(signed(renewal_world)) * 2
    renewal_world.response.write_bytes(content)
    before = renewal_world.snapshot()
    assert renewal_world.run() == 0
    assert renewal_world.snapshot() == before
    assert f"response refused: the response {renewal_world.response} {says}" in caplog.text


def test_unit_running_twice_is_idempotent(renewal_world):
    world = renewal_world
    world.run()
    requested = world.snapshot()
    assert world.run() == 0
    assert world.snapshot() == requested  # the pending request stays as it was
    world.respond(signed(world))
    world.run()
    installed = world.snapshot()
    assert world.run() == 0
    assert world.snapshot() == installed  # the response is ignored: no request pending


def test_unit_run_cut_after_the_key_was_replaced_keeps_the_pair_that_was_in_use(renewal_world):
    world = renewal_world
    old_cert, old_key = ((world.credentials / name).read_bytes()
                         for name in ("client.crt", "client.key"))
    world.run()
    world.respond(signed(world))
    # A power cut after the key was renamed into place, before the certificate was.
    kept = world.pending_key.parent
    (kept / "client.key.previous").write_bytes(old_key)
    (kept / "client.crt.previous").write_bytes(old_cert)
    world.write_credential("client.key", world.pending_key.read_bytes())
    world.run()
    assert (kept / "client.key.previous").read_bytes() == old_key
    assert (kept / "client.crt.previous").read_bytes() == old_cert
    assert x509.load_pem_x509_certificate((world.credentials / "client.crt").read_bytes()) \
        .public_key().public_bytes(*SPKI) == serialization.load_pem_private_key(
            (world.credentials / "client.key").read_bytes(), None).public_key().public_bytes(*SPKI)


def test_unit_password_account_does_nothing_and_says_so(renewal_world, caplog):
    caplog.set_level(logging.INFO)
    for name in ("client.crt", "client.key"):
        (renewal_world.credentials / name).unlink()
    before = renewal_world.snapshot()
    assert renewal_world.run() == 0
    assert renewal_world.snapshot() == before
    assert "password account; nothing to renew" in caplog.text


def test_unit_expired_certificate_still_requests_and_logs_an_error(make_renewal_world, caplog):
    world = make_renewal_world(10)
    assert world.run(later=11 * DAY) == 1
    assert world.pending_key.exists() and world.csr_pem()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "EXPIRED" in errors[0] and "new bundle" in errors[0]


def test_unit_clock_before_the_certificate_was_issued_waits(renewal_world, caplog):
    before = renewal_world.snapshot()
    assert renewal_world.run(later=-400 * DAY) == 0
    assert renewal_world.snapshot() == before
    assert "not synchronised" in caplog.text


def csr_key(world):
    return x509.load_pem_x509_csr(world.csr_pem()).public_key().public_bytes(*SPKI)


def test_unit_lost_csr_is_written_again_from_the_pending_key(renewal_world):
    world = renewal_world
    world.run()
    first = world.pending_key.read_bytes()
    (world.renewal_dir / files.REQUEST_NAME).unlink()
    world.run(later=DAY)
    assert world.pending_key.read_bytes() == first  # the same request, written again
    assert csr_key(world) == pending_key(world).public_key().public_bytes(*SPKI)


def test_unit_old_request_keeps_its_key_so_a_certificate_signed_meanwhile_installs(
        renewal_world, caplog):
    """The signing service signed the request, but the kiosk was offline for over a week: the
    certificate it then receives certifies the pending key, so that key must still be there (a
    new key would be refused by the service, the kiosk's newest certificate being that one)."""
    caplog.set_level(logging.INFO)
    world = renewal_world
    world.run()
    first = world.pending_key.read_bytes()
    late = signed(world)  # recorded and retained by the service; not yet received
    old = (world.now - DAY).timestamp()
    for path in (world.pending_key, world.renewal_dir / files.REQUEST_NAME):
        os.utime(path, (old, old))
    week = unit.CSR_REWRITE_AGE
    assert world.run(later=week) == 0
    assert world.pending_key.read_bytes() == first
    assert csr_key(world) == pending_key(world).public_key().public_bytes(*SPKI)
    assert "wrote the request of" in caplog.text and "again" in caplog.text
    rewritten = world.snapshot()
    assert world.run(later=week) == 0  # written again once a week, not at every run
    assert world.snapshot() == rewritten
    world.respond(late)
    assert world.run(later=week) == 0
    assert x509.load_pem_x509_certificate((world.credentials / "client.crt").read_bytes()) == late


def test_unit_unreadable_pending_key_is_replaced_by_a_new_request(renewal_world, caplog):
    world = renewal_world
    world.run()
    world.pending_key.write_bytes(b"not a key\n")
    assert world.run() == 0
    assert "not a readable PEM key" in caplog.text
    assert csr_key(world) == pending_key(world).public_key().public_bytes(*SPKI)


def test_unit_kiosk_cert_verb_takes_every_path_as_an_option(renewal_world, capsys):
    world = renewal_world
    argv = ["cert", "--config", str(world.config), "--credentials", str(world.credentials),
            "--pending-key", str(world.pending_key), "--renewal-dir", str(world.renewal_dir),
            "--response", str(world.response)]
    assert cli.run_verbs("kiosk", cli.VERBS, argv) == 0
    assert world.pending_key.exists() and world.csr_pem()
    world.config.write_text("[kiosk]\nid = 1\n", encoding="utf-8")
    assert cli.run_verbs("kiosk", cli.VERBS, argv) == 1
    assert "kiosk.id" in capsys.readouterr().err


#: prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN): the kernel's rule behind systemd's
#: MemoryDenyWriteExecute= (Linux 6.3 and later), which kiosk-cert.service sets.
NO_WRITABLE_EXEC = ("import ctypes, sys\n"
                    "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:\n"
                    "    sys.exit(77)\n"
                    "from kiosk.cli import main\n"
                    "main(sys.argv[1:])\n")


def test_unit_renews_with_no_writable_executable_memory(renewal_world):
    world = renewal_world
    argv = [sys.executable, "-c", NO_WRITABLE_EXEC, "cert", "--config", str(world.config),
            "--credentials", str(world.credentials), "--pending-key", str(world.pending_key),
            "--renewal-dir", str(world.renewal_dir), "--response", str(world.response)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3)")
    assert done.returncode == 0, done.stderr
    world.respond(signed(world))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "installed certificate" in done.stderr
    assert not world.pending_key.exists()
