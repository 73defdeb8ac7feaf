"""Appliance fixtures: a kiosk's root file system, data partition and boot partition as folders."""

from pathlib import Path

import pytest

VALID_TOML = """\
[kiosk]
id = "bkk-bangrak-01"
service_point_id = "bkk-1004"
name_th = "สำนักงานเขตบางรัก"
name_en = "Bang Rak District Office"
agency = "Bangkok Metropolitan Administration"
ministry = "Ministry of Interior"
province = "Bangkok"
lat = 13.7294
lon = 100.5215
mode = "production"

[[services]]
id = "id-card"
name_th = "ทำบัตรประจำตัวประชาชน"
name_en = "ID card"
no_copy = "cancelled"

[mqtt]
host = "collector.example.go.th"
password_file = "/run/credentials/kiosk.service/mqtt_password"

[gpio]
pin_factory = "mock"
led_fault = 22

[time]
ntp_servers = ["ntp1.example.go.th", "time.navy.mi.th"]
"""


class Appliance:
    """One kiosk's storage: a FAT-like boot folder, a data partition, and a replaceable root.

    The root is laid out as the image lays it out (``etc/kiosk`` a relative link into the data
    partition mounted at ``var/lib/kiosk``); :meth:`reboot_with_fresh_root` throws the root away
    and lays a new one over the same data partition, as a read-only overlay root does.
    """

    def __init__(self, base: Path):
        self.base = base
        self.boot = base / "boot"
        self.data = base / "data"
        self.boot.mkdir()
        self.data.mkdir()
        self.generation = 0
        self.root = self._lay_root()

    def _lay_root(self):
        self.generation += 1
        root = self.base / f"root{self.generation}"
        (root / "var/lib").mkdir(parents=True)
        (root / "var/lib/kiosk").symlink_to(self.data)  # the mount of the data partition
        (root / "etc").mkdir()
        (root / "etc/kiosk").symlink_to("../var/lib/kiosk/config")
        return root

    def reboot_with_fresh_root(self):
        self.root = self._lay_root()

    def files_in_data(self):
        return sorted(str(p.relative_to(self.data)) for p in self.data.rglob("*"))


@pytest.fixture
def appliance(tmp_path):
    return Appliance(tmp_path)
