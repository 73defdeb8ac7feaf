"""Where the renewal's files are: the hand-over between the root unit (``kiosk cert``) and the
kiosk process, which may not write its own credentials. Standard library only.

The root unit writes only into root's folders (the kiosk can read the request, never plant a
link there); the kiosk writes the certificate it received into its own state folder, which the
root unit reads as untrusted input.
"""

from pathlib import Path

from kiosk.bundle import DATA_DIR

#: Root's, 0755: the pending request (PEM, 0644) and the record of the last install.
RENEWAL_DIR = Path(DATA_DIR, "renewal")
REQUEST_NAME = "request.csr"
#: JSON ``{"serial": hex, "not_after": RFC 3339, "installed": RFC 3339}``: the kiosk restarts
#: when idle once this is another file than at its start, to load the new certificate.
INSTALLED_NAME = "installed.json"
#: Root's, 0700: the key of the pending request (0600); it never leaves this folder until the
#: matching certificate is installed beside the credentials.
PENDING_KEY = Path("/etc/kiosk/renewal/pending.key")
#: In the kiosk's ``storage.data_dir``: the certificate the signing service sent, as received.
RESPONSE_NAME = "cert-response.pem"
#: Largest response the root unit reads: a certificate is about 800 characters.
MAX_RESPONSE_BYTES = 16 * 1024


def response_path(data_dir):
    """Where the kiosk leaves the certificate it received, for the root unit's path unit."""
    return Path(data_dir, RESPONSE_NAME)


#: Root's, 0700 (kiosk firstboot): the MQTT credentials kiosk.service loads (``LoadCredential=``),
#: named as :data:`kiosk.bundle.CREDENTIALS` installs them.
CREDENTIALS_DIR = Path("/etc/kiosk/credentials")
CERT_NAME = "client.crt"
KEY_NAME = "client.key"
#: The pair an install replaced (``client.crt.previous``, ``client.key.previous``), kept for a
#: technician to roll back, beside the pending key: not in the credentials, which the kiosk
#: process is handed whole. The next install replaces it.
PREVIOUS_SUFFIX = ".previous"


def previous(name, pending_key=PENDING_KEY):
    """Where the install keeps the replaced credential ``name``: in the pending key's folder."""
    return Path(pending_key).with_name(name + PREVIOUS_SUFFIX)
