"""The central broker's accounts and ports: what provisioning, the kiosk id rule and the test
broker must agree on (docs/broker.md). Standard library only.

Its own module so the config schema can refuse a reserved kiosk id without importing telemetry,
and ``kiosk-fleet provision`` can write password lines without importing the test broker.
"""

import base64
import hashlib
import secrets

COLLECTOR = "collector"
OPS = "ops"
#: The signing service's account (``kiosk-fleet ca``): reads certificate requests, writes
#: certificates, nothing else.
CA = "ca"
#: Production ports (docs/broker.md): kiosks with client certificates, and password accounts.
MTLS_PORT = 8883
PASSWORD_PORT = 8884


def is_reserved(kiosk_id):
    """Whether ``kiosk_id`` would name a fleet account (a kiosk id is its broker account):
    ``ops``, ``ca``, or ``collector`` and every name starting with it (``collector-1``: the
    broker plugin lets those join the collectors' shared subscription)."""
    return kiosk_id in (OPS, CA) or kiosk_id.startswith(COLLECTOR)


def password_hash(password, salt=None):
    """A Mosquitto 2.0 ``$7$`` line value: PBKDF2-SHA512, 101 rounds, as mosquitto_passwd
    writes it; computing it here saves one subprocess per account."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
