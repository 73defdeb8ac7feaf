"""A kiosk's renewal files in a temporary folder: its config, its credentials with a client
certificate from a test CA, root's renewal folders and the kiosk's state folder."""

import datetime as dt
import os
from pathlib import Path

import pytest

from kiosk.renewal import files, unit
from tests.fixtures.appliance import VALID_TOML
from tests.renewal import pki

KIOSK_ID = "bkk-bangrak-01"


class RenewalWorld:
    """The files one ``kiosk cert`` run sees, and drive methods to change them."""

    def __init__(self, root, *, days_left):
        self.root = root
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.ca = pki.Ca(now=self.now)
        self.config = root / "etc/kiosk.toml"
        self.credentials = root / "etc/credentials"
        self.pending_key = root / "etc/renewal/pending.key"
        self.renewal_dir = root / "var/renewal"
        self.response = root / "state" / files.RESPONSE_NAME
        for folder, mode in ((self.credentials, 0o700), (self.pending_key.parent, 0o700),
                             (self.renewal_dir, 0o755), (self.response.parent, 0o700)):
            folder.mkdir(parents=True)
            os.chmod(folder, mode)
        self.config.write_text(VALID_TOML, encoding="utf-8")
        self.key = pki.new_key()
        self.cert = self.ca.issue(self.key.public_key(), KIOSK_ID,
                                  not_before=self.now - dt.timedelta(days=365),
                                  not_after=self.now + dt.timedelta(days=days_left))
        self.write_credential("client.crt", pki.pem(self.cert))
        self.write_credential("client.key", pki.key_pem(self.key))
        self.write_credential("ca.crt", pki.pem(self.ca.cert))

    def write_credential(self, name, data):
        path = self.credentials / name
        path.write_bytes(data)
        os.chmod(path, 0o600)

    @property
    def paths(self):
        return unit.Paths(self.config, self.credentials, self.pending_key, self.renewal_dir,
                          self.response)

    def run(self, *, later=dt.timedelta(0)):
        """One run at ``later`` after the world's now; its exit status."""
        return unit.run(self.paths, now=self.now + later)

    def csr_pem(self):
        return (self.renewal_dir / files.REQUEST_NAME).read_bytes()

    def respond(self, cert):
        """What the kiosk does with the certificate the signing service sent."""
        self.response.write_bytes(pki.pem(cert))

    def snapshot(self):
        """Every file and folder under the world, with its mode and content (or link target)."""
        seen = {}
        for path in sorted(self.root.rglob("*")):
            where = str(path.relative_to(self.root))
            info = path.lstat()
            if path.is_symlink():
                seen[where] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[where] = ("dir", oct(info.st_mode & 0o7777))
            else:
                seen[where] = (oct(info.st_mode & 0o7777), path.read_bytes())
        return seen


@pytest.fixture
def renewal_world(tmp_path):
    """A kiosk whose certificate expires in 10 days: its renewal (30 days before) is due."""
    return RenewalWorld(Path(tmp_path), days_left=10)


@pytest.fixture
def make_renewal_world(tmp_path):
    return lambda days_left: RenewalWorld(Path(tmp_path), days_left=days_left)
