"""The client certificate this kiosk process loaded: whether it has expired, and whether the
root unit installed a new one since the process started (docs/credentials.md).

The runner asks at start and at housekeeping, and decides: an expired certificate suspends
service (the broker refuses it, so the kiosk cannot report itself: the technician's line and
the journal say so), and a new one installed restarts the kiosk when idle, since systemd's
``LoadCredential`` copies credentials only when the service starts. Both answers are cheap: the
certificate is parsed again only when its file changes, the install record likewise.
"""

import json
import logging
import os
from pathlib import Path

from cryptography import x509

from kiosk import logsafe
from kiosk.renewal import files

log = logging.getLogger(__name__)

#: The suspension's reason: the start of the technician's line of the out-of-service screen.
REASON = "cert_expired"
#: Largest install record read: it holds a serial and two times.
MAX_RECORD_BYTES = 4096


def read_certificate(path):
    """``(serial, not_after)`` of the PEM certificate at ``path`` (``not_after`` aware UTC);
    OSError or ValueError when it cannot be read."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.serial_number, cert.not_valid_after_utc


class ClientCert:
    """The certificate at ``cert_file`` (``mqtt.cert_file``) and the install record in
    ``renewal_dir``, as the kiosk finds them when it makes this object at its start."""

    def __init__(self, cert_file, *, renewal_dir=files.RENEWAL_DIR):
        self.path = Path(cert_file)
        self.record_path = Path(renewal_dir, files.INSTALLED_NAME)
        #: The record as it was at the start: only another one asks for a restart. Its
        #: identity, not its time, since NTP may step the clock back after boot and make a
        #: record written since look older than the process.
        self._record_at_start = _identity(self.record_path)
        self._seen = self._record_seen = None  # (mtime_ns, size, inode) last read
        self._cert = self._record = None
        self._said = set()  # serials whose expiry was logged
        self.refresh()
        #: The serial the process loaded: a record naming it asks for no restart.
        self.loaded_serial = None if self._cert is None else self._cert[0]

    def refresh(self):
        """Read the certificate again if its file changed; a missing or unreadable one is
        said once and judged as no certificate (the link's own error names the path)."""
        seen = _identity(self.path)
        if seen == self._seen:
            return
        self._seen = seen
        try:
            self._cert = read_certificate(self.path)
        except (OSError, ValueError) as exc:
            self._cert = None
            log.warning("cannot read the client certificate %s to check its expiry: %s",
                        self.path, logsafe.printable(str(exc)))

    def expired(self, wall, synced):
        """The technician's reason when the certificate expired by ``wall``, else None; never
        judged on a clock NTP has not set (a Pi without a real-time clock may say 1970 or far
        ahead). The journal hears it once per certificate."""
        if self._cert is None or not synced:
            return None
        serial, not_after = self._cert
        if wall < not_after:
            return None
        if serial not in self._said:
            self._said.add(serial)
            log.error("client certificate %x expired %s: the broker refuses it; install a new "
                      "bundle from kiosk-fleet provision", serial,
                      not_after.strftime("%Y-%m-%d %H:%M UTC"))
        return (f"{REASON}: client certificate expired {not_after:%Y-%m-%d}; the broker "
                "refuses it: install a new bundle")

    def installed(self):
        """The root unit's install record (``serial``, ``not_after``) when it was written since
        the process started and names another certificate than the one loaded, else None."""
        seen = _identity(self.record_path)
        if seen != self._record_seen:
            self._record_seen = seen
            self._record = self._read_record() if seen is not None else None
        if self._record is None or seen == self._record_at_start:
            return None
        if self._record["serial"] == self.loaded_serial:
            return None  # the process loaded it already (an install run again)
        return self._record

    def _read_record(self):
        try:
            with open(self.record_path, "rb") as record:
                content = json.loads(record.read(MAX_RECORD_BYTES))
            return {"serial": int(content["serial"], 16),
                    "not_after": str(content["not_after"])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignored the renewal's install record %s: %s", self.record_path,
                        logsafe.printable(str(exc)))
            return None


def _identity(path):
    """What tells a file changed without reading it; None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino
