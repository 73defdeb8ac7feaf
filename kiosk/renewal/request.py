"""The kiosk's renewal request: a new key that stays root's, and the CSR the kiosk relays.

Run by root (``kiosk cert``). The key is made on the device and never leaves root's 0700 folder
until the matching certificate is installed; the CSR names the kiosk and nothing else (subject
exactly ``CN=<kiosk id>``, no extensions), because the signing service decides every other
field.
"""

import datetime as dt
import logging
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiosk import atomic

log = logging.getLogger(__name__)


def read_pending(key_path):
    """``(key, made)``: the pending key and when it was written (aware UTC), or None when there is
    none. A file that is not an EC key is logged and treated as none (a new request replaces
    it)."""
    key_path = Path(key_path)
    try:
        data = key_path.read_bytes()
        made = dt.datetime.fromtimestamp(key_path.stat().st_mtime, dt.UTC)
    except FileNotFoundError:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        log.warning("the pending key %s is not a readable PEM key: a new request replaces it",
                    key_path)
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        log.warning("the pending key %s is not an EC key: a new request replaces it", key_path)
        return None
    return key, made


def make_request(kiosk_id, key_path, csr_path):
    """Make a new P-256 key as the pending key (0600) and its CSR (0644), in that order: a CSR on
    file always belongs to the key beside it. Returns the key."""
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = Path(key_path)
    key_path.parent.mkdir(mode=0o700, exist_ok=True)
    atomic.replace(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), 0o600)
    write_csr(key, kiosk_id, csr_path)
    return key


def write_csr(key, kiosk_id, csr_path):
    """The CSR of ``key`` for ``kiosk_id``, written world-readable for the kiosk to relay."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id)]))
           .sign(key, hashes.SHA256()))
    csr_path = Path(csr_path)
    csr_path.parent.mkdir(mode=0o755, exist_ok=True)
    atomic.replace(csr_path, csr.public_bytes(serialization.Encoding.PEM), 0o644)
