"""The certificate the signing service sent, checked and installed beside the MQTT credentials.

Run by root (``kiosk cert``) on a file the kiosk user wrote: the response is read as untrusted
(no symlink, a regular file of at most :data:`~kiosk.renewal.files.MAX_RESPONSE_BYTES`), and
installed only when it certifies the pending key, for this kiosk, from the issuer of the
certificate in use, and is valid now. What is installed is the certificate re-encoded from its
parsed form, never the kiosk's bytes.
"""

import datetime as dt
import json
import logging
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from kiosk import atomic
from kiosk.errors import KioskError
from kiosk.renewal import files

log = logging.getLogger(__name__)

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Refused(KioskError, ValueError):
    """The response cannot be installed, ever: the message says why."""


class NotYet(KioskError, ValueError):
    """The response may be installed later (it is not valid yet): left on file."""


def serial(cert):
    """The serial as openssl prints it (``3a:4f:...``): a log line never holds a run of 13
    digits, the shape every log redacts as a citizen ID."""
    return ":".join(f"{byte:02x}" for byte in
                    cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8 or 1))


def when(moment):
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def read_response(path):
    """The one certificate in the kiosk's response file, or None when there is no file.
    Refused for a symlink, anything but a regular file, a file over the size limit, or anything
    but exactly one PEM certificate. O_NONBLOCK: a FIFO planted at the name cannot hang root."""
    data = atomic.read_limited(path, files.MAX_RESPONSE_BYTES, "the response", Refused)
    if data is None:
        return None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise Refused(f"the response {path} is not a PEM certificate: refused") from None
    if len(certs) != 1:
        raise Refused(f"the response {path} holds {len(certs)} certificates, not one: refused")
    return certs[0]


def check(cert, *, key, kiosk_id, current, now, cas=()):
    """Refused unless ``cert`` certifies the pending ``key`` for ``kiosk_id``, from the issuer of
    the ``current`` certificate (and signed by it, when one of ``cas`` is that issuer), and has
    not expired at ``now``; NotYet if it is valid only later."""
    if cert.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise Refused(f"certificate {serial(cert)} is for another key than the pending request's")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [name.value for name in names] != [kiosk_id]:
        shown = ", ".join(str(name.value)[:64] for name in names) or "no CN"
        raise Refused(f"certificate {serial(cert)} names {shown!r}, not this kiosk "
                      f"({kiosk_id!r})")
    if cert.issuer != current.issuer:
        raise Refused(f"certificate {serial(cert)} is issued by {cert.issuer.rfc4514_string()!r}, "
                      f"not by the current certificate's issuer "
                      f"{current.issuer.rfc4514_string()!r}")
    for ca in cas:
        if ca.subject == cert.issuer:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                raise Refused(f"certificate {serial(cert)} is not signed by its issuer "
                              f"{ca.subject.rfc4514_string()!r}") from None
    if now > cert.not_valid_after_utc:
        raise Refused(f"certificate {serial(cert)} expired {when(cert.not_valid_after_utc)}")
    if now < cert.not_valid_before_utc:
        raise NotYet(f"certificate {serial(cert)} is valid only from "
                     f"{when(cert.not_valid_before_utc)}: left for a later run")


def read_cas(path):
    """The certificates of the CA bundle at ``path`` (empty when there is none or unreadable):
    the issuer's own certificate, when the bundle holds it, also checks the signature."""
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError):
        return []


def install(cert, key, key_pem, *, credentials, renewal_dir, pending_key, now):
    """Put ``cert`` and its key in place of the credentials in use, the old pair kept as
    ``*.previous`` beside the pending key (root's alone: the kiosk process is handed the
    credentials folder whole); then record the install and drop the request. Each file is
    renamed into place; a power cut in between leaves the pending key, and the next run
    installs again (keeping the pair that was in use as the previous one, not a half-installed
    one)."""
    credentials = Path(credentials)
    cert_path, key_path = credentials / files.CERT_NAME, credentials / files.KEY_NAME
    if not _holds(key_path, key):  # not a run cut short after it replaced the key
        for path in (cert_path, key_path):
            if path.exists():
                atomic.replace(files.previous(path.name, pending_key),
                                       path.read_bytes(), 0o600)
    atomic.replace(key_path, key_pem, 0o600)
    atomic.replace(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o600)
    record = {"serial": f"{cert.serial_number:x}",
              "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
              "installed": now.astimezone(dt.UTC).isoformat(timespec="seconds")
              .replace("+00:00", "Z")}
    renewal_dir = Path(renewal_dir)
    renewal_dir.mkdir(mode=0o755, exist_ok=True)
    atomic.replace(renewal_dir / files.INSTALLED_NAME,
                           (json.dumps(record) + "\n").encode(), 0o644)
    Path(pending_key).unlink(missing_ok=True)
    (renewal_dir / files.REQUEST_NAME).unlink(missing_ok=True)
    atomic.sync_folder(Path(pending_key).parent)
    atomic.sync_folder(renewal_dir)
    return record


def _holds(key_path, key):
    """Whether the installed key at ``key_path`` is ``key`` already."""
    try:
        installed = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    return installed.public_key().public_bytes(*_SPKI) == key.public_key().public_bytes(*_SPKI)
