"""`kiosk-fleet provision`: CSV rows to bundles, bad rows by line number, real broker files."""

import argparse
import csv
import datetime as dt
import io
import os
import re
import subprocess
import sys
import time

import pytest

from kiosk import config as kiosk_config
from kiosk.errors import ProvisionError
from kiosk.fleet import registry as fleet_registry
from kiosk.fleet.db import open_database
from kiosk.fleet.provision import (
    CERT_DAYS,
    COLUMNS,
    SERVICES,
    add_arguments,
    provision,
    read_csv_text,
)
from kiosk.fleet.registry_csv import Service, ServicePoint
from kiosk.rigs.broker import MOSQUITTO, free_port, is_listening
from kiosk.visit import OTHER_SERVICE

ROOT_DIR = __import__("pathlib").Path(__file__).resolve().parents[2]
REGISTERED = (Service("id-card", "ทำบัตรประจำตัวประชาชน", "ID card", "cancelled"),
              Service("house-reg", "ทะเบียนบ้าน", "House registration", "in_progress"))
LAST_WEEK = dt.datetime.now(dt.UTC) - dt.timedelta(days=7)


def row(n, **overrides):
    values = dict(kiosk_id=f"cnx-mueang-{n:03d}", service_point_id=f"cnx-{n // 3:03d}",
                  name_th="ที่ว่าการอำเภอเมืองเชียงใหม่", name_en="Mueang Chiang Mai District Office",
                  agency="Department of Provincial Administration", ministry="Ministry of Interior",
                  province="Chiang Mai", lat="18.7883", lon="98.9853", services="")
    values.update(overrides)
    return values


@pytest.fixture
def reg(tmp_path):
    """A registry holding the points of :func:`row` (cnx-000 to cnx-033), each offering
    :data:`REGISTERED`."""
    registry = fleet_registry.open_registry(tmp_path / "fleet.sqlite3")
    registry.import_points([ServicePoint(f"cnx-{n:03d}", "กระทรวงมหาดไทย", "กรมการปกครอง",
                                         "ที่ว่าการอำเภอ", "District Office", "50", "เมือง",
                                         18.7883, 98.9853, REGISTERED) for n in range(34)],
                           as_of=LAST_WEEK, source="test")
    yield registry
    registry.close()


def sample_registry(path):
    """The shipped sample registry, imported into a fleet database at ``path`` (the example
    kiosk list's points are in it)."""
    registry = fleet_registry.open_registry(path)
    fleet_registry.import_file(registry, ROOT_DIR / "kiosk/fleet/data/registry-sample.csv",
                               as_of=LAST_WEEK)
    return registry


def write_csv(path, rows, encoding="utf-8"):
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=(*COLUMNS, SERVICES), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def test_provision_hundred_rows_three_bad(tmp_path, reg):
    rows = [row(n) for n in range(1, 101)]
    rows[9] = row(10, lat="north")                                   # line 11
    rows[49] = row(50, services="id-card; passport")                 # line 51
    rows[89] = row(90, kiosk_id="CNX 90")                            # line 91
    out = tmp_path / "out"
    result = provision(write_csv(tmp_path / "kiosks.csv", rows, "utf-8-sig"), out,
                       registry=reg, broker="mqtt.example.go.th")
    assert len(result.bundles) == 97
    assert [p.split(":")[0] for p in result.problems] == ["line 11", "line 51", "line 91"]
    assert "lat" in result.problems[0] and "'north'" in result.problems[0]
    assert "services" in result.problems[1] and "'passport'" in result.problems[1]
    assert "registry import" in result.problems[1]
    assert "kiosk_id" in result.problems[2] and "'CNX 90'" in result.problems[2]
    for bundle in result.bundles:
        check = kiosk_config.main(__import__("argparse").Namespace(
            action="check", file=str(bundle / "kiosk.toml")))
        assert check == 0, bundle
        assert (bundle / "mqtt-password").stat().st_mode & 0o077 == 0
    passwd = (out / "_broker/passwd").read_text().splitlines()
    assert len(passwd) == 97 and all(":$7$101$" in line for line in passwd)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no half bundles


def test_provision_bundle_is_what_firstboot_expects(tmp_path, reg):
    result = provision(write_csv(tmp_path / "k.csv", [row(1, services="id-card; house-reg")]),
                       tmp_path / "out", registry=reg, broker="mqtt.example.go.th",
                       ntp_servers=["ntp.example.go.th"])
    cfg = kiosk_config.load(result.bundles[0] / "kiosk.toml")
    assert cfg.kiosk.id == "cnx-mueang-001" and cfg.kiosk.lat == 18.7883
    assert [s.id for s in cfg.services] == ["id-card", "house-reg"]
    assert cfg.services[1].no_copy == "in_progress"
    assert cfg.mqtt.password_file == "/run/credentials/kiosk.service/mqtt_password"
    assert cfg.time.ntp_servers == ("ntp.example.go.th",)


def test_provision_takes_the_services_from_the_registry(tmp_path, reg):
    """Ids, names and declared status are the registry's, all of the point's services without
    an override; a point the registry does not hold is refused, naming the fix."""
    path = tmp_path / "k.csv"
    path.write_text(",".join(COLUMNS) + "\n" + ",".join(row(1)[c] for c in COLUMNS) + "\n"
                    + ",".join(row(2, service_point_id="cnx-999")[c] for c in COLUMNS) + "\n",
                    encoding="utf-8")  # no services column at all
    result = provision(path, tmp_path / "out", registry=reg, broker="mqtt.example.go.th")
    [bundle] = result.bundles
    services = kiosk_config.load(bundle / "kiosk.toml").services
    assert [(s.id, s.name_th, s.name_en, s.no_copy) for s in services] == sorted(
        (s.id, s.name_th, s.name_en, s.no_copy) for s in REGISTERED)
    [problem] = result.problems
    assert problem.startswith("line 3: service_point_id") and "registry import" in problem


def test_provision_never_gives_a_kiosk_the_other_service_id(tmp_path, reg):
    """A registry imported before the id was reserved may hold it: the kiosk's own "other
    service" choice would then be that service."""
    reg.import_points([ServicePoint("cnx-900", "กระทรวงมหาดไทย", "กรมการปกครอง", "ที่ว่าการอำเภอ",
                                    "District Office", "50", "เมือง", 18.7883, 98.9853,
                                    (Service(OTHER_SERVICE, "อื่น", "Other", "not_yet"),))],
                      as_of=LAST_WEEK + dt.timedelta(days=1), source="test")
    result = provision(write_csv(tmp_path / "k.csv", [row(1, service_point_id="cnx-900")]),
                       tmp_path / "out", registry=reg, broker="mqtt.example.go.th")
    assert result.bundles == []
    [problem] = result.problems
    assert problem.startswith("line 2: services") and "'other'" in problem


def test_provision_reads_thai_excel_cp874(tmp_path, reg):
    path = write_csv(tmp_path / "excel.csv", [row(1)], "cp874")
    assert read_csv_text(path)[1] == "cp874"
    result = provision(path, tmp_path / "out", registry=reg, broker="mqtt.example.go.th")
    assert result.encoding == "cp874" and not result.problems
    text = (result.bundles[0] / "kiosk.toml").read_text(encoding="utf-8")
    assert "ที่ว่าการอำเภอเมืองเชียงใหม่" in text


def test_provision_duplicate_id_and_existing_bundle_are_refused(tmp_path, reg):
    out = tmp_path / "out"
    path = write_csv(tmp_path / "k.csv", [row(1), row(1)])
    result = provision(path, out, registry=reg, broker="mqtt.example.go.th")
    assert len(result.bundles) == 1
    assert result.problems[0].startswith("line 3: kiosk_id") and "line 2" in result.problems[0]
    again = provision(write_csv(tmp_path / "k2.csv", [row(1)]), out, registry=reg,
                      broker="mqtt.example.go.th")
    assert not again.bundles and "already exists" in again.problems[0]


def test_provision_missing_column_names_it(tmp_path, reg):
    (tmp_path / "k.csv").write_text("kiosk_id,lat\nabc,13\n")
    with pytest.raises(ProvisionError, match="line 1: missing column.*service_point_id"):
        provision(tmp_path / "k.csv", tmp_path / "out", registry=reg,
                  broker="mqtt.example.go.th")


def agency_ca(folder, days):
    """``(ca.crt, ca.key)`` of a P-256 agency CA valid ``days`` from now."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                    "-days", str(days), "-subj", "/CN=Agency CA"], cwd=folder, check=True,
                   capture_output=True)
    return folder / "ca.crt", folder / "ca.key"


def serial_and_end(cert):
    """The certificate's serial (an int) and not-after (aware), as openssl reads them."""
    shown = subprocess.run(["openssl", "x509", "-noout", "-serial", "-enddate", "-in", str(cert)],
                           capture_output=True, text=True, check=True).stdout
    fields = dict(line.split("=", 1) for line in shown.splitlines())
    end = dt.datetime.strptime(fields["notAfter"], "%b %d %H:%M:%S %Y GMT")
    return int(fields["serial"], 16), end.replace(tzinfo=dt.UTC)


@pytest.fixture
def fleet_db(tmp_path, reg):
    """The fleet database the registry is in (``main`` hands provision both)."""
    db = open_database(tmp_path / "fleet.sqlite3")
    yield db
    db.close()


def test_provision_client_certificates_from_the_agency_ca(tmp_path, reg, fleet_db):
    ca = agency_ca(tmp_path, 400)
    result = provision(write_csv(tmp_path / "k.csv", [row(7)]), tmp_path / "out",
                       registry=reg, broker="mqtt.example.go.th", ca=ca, fleet=fleet_db)
    assert result.problems == []
    bundle = result.bundles[0]
    serial, not_after = serial_and_end(bundle / "mqtt-client.crt")
    year = dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    assert abs(not_after - year) < dt.timedelta(days=1)
    [recorded] = fleet_db.certificates()
    assert (recorded.kiosk_id, int(recorded.serial, 16)) == ("cnx-mueang-007", serial)
    assert recorded.not_after == not_after.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert sorted(p.name for p in bundle.iterdir()) == ["kiosk.toml", "mqtt-client.crt",
                                                        "mqtt-client.key"]
    verify = subprocess.run(["openssl", "verify", "-CAfile", "ca.crt",
                             str(bundle / "mqtt-client.crt")],
                            cwd=tmp_path, capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in",
                              str(bundle / "mqtt-client.crt")], capture_output=True, text=True)
    assert "CN = cnx-mueang-007" in subject.stdout
    assert kiosk_config.load(bundle / "kiosk.toml").mqtt.key_file.endswith("mqtt_client.key")


def test_provision_refuses_a_certificate_that_would_outlive_the_ca(tmp_path, reg, fleet_db):
    """The broker would refuse it from the CA's expiry on, before cert_expiring warned."""
    ca = agency_ca(tmp_path, 2)
    out = tmp_path / "out"
    result = provision(write_csv(tmp_path / "k.csv", [row(1)]), out, registry=reg,
                       broker="mqtt.example.go.th", ca=ca, fleet=fleet_db)
    [problem] = result.problems
    ca_end = serial_and_end(ca[0])[1]
    assert problem.startswith("line 2: --cert-days 365") and "after the agency CA" in problem
    named = re.search(r"would expire (\S+ \S+) UTC", problem).group(1)
    expires = dt.datetime.strptime(named, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
    assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(days=365))) < dt.timedelta(
        minutes=2)
    assert f"({ca_end:%Y-%m-%d %H:%M} UTC)" in problem
    assert result.bundles == [] and fleet_db.certificates() == []
    assert sorted(p.name for p in out.iterdir()) == []  # no bundle, no half bundle

    within = provision(write_csv(tmp_path / "k.csv", [row(1)]), out, registry=reg,
                       broker="mqtt.example.go.th", ca=ca, cert_days=1, fleet=fleet_db)
    assert within.problems == [] and len(fleet_db.certificates()) == 1


def test_provision_names_a_certificate_it_could_not_record(tmp_path, reg, fleet_db):
    """The bundle is complete and stays; the row's problem says the alarm will not cover it."""
    ca = agency_ca(tmp_path, 400)
    read_only = open_database(tmp_path / "fleet.sqlite3", read_only=True)
    try:
        result = provision(write_csv(tmp_path / "k.csv", [row(1)]), tmp_path / "out",
                           registry=reg, broker="mqtt.example.go.th", ca=ca, fleet=read_only)
    finally:
        read_only.close()
    [bundle] = result.bundles
    [problem] = result.problems
    serial = serial_and_end(bundle / "mqtt-client.crt")[0]
    assert problem.startswith("line 2: bundle written, but its certificate")
    assert f"serial {serial:x}" in problem and "cert_expiring" in problem
    assert fleet_db.certificates() == []


def test_provision_cert_days_is_an_option_of_whole_days():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    required = ["--csv", "k.csv", "--out", "out", "--broker", "mqtt.example.go.th"]
    assert parser.parse_args(required).cert_days == CERT_DAYS == 365
    assert parser.parse_args([*required, "--cert-days", "90"]).cert_days == 90
    for bad in ("0", "-5", "1.5"):
        with pytest.raises(SystemExit):
            parser.parse_args([*required, "--cert-days", bad])


def test_provision_broker_accepts_the_generated_password(tmp_path, reg):
    """The $7$ lines and the ACL work in a real Mosquitto: right password in, wrong one out."""
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    out = tmp_path / "out"
    result = provision(write_csv(tmp_path / "k.csv", [row(1)]), out, registry=reg,
                       broker="127.0.0.1")
    password = (result.bundles[0] / "mqtt-password").read_text().strip()
    port = free_port()
    (tmp_path / "mosquitto.conf").write_text(
        # As root Mosquitto would switch to a user that cannot enter the private temp folder.
        ("user root\n" if os.geteuid() == 0 else "") +
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {out}/_broker/passwd\n"
        f"acl_file {out}/_broker/acl\npersistence false\nlog_dest stderr\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not is_listening(port):  # poll until Mosquitto opened its port
            assert broker.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.02)

        def connack(secret):
            codes = []
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cnx-mueang-001",
                                 protocol=mqtt.MQTTv5)
            client.username_pw_set("cnx-mueang-001", secret)
            client.on_connect = lambda c, u, f, rc, p: codes.append(rc)
            client.connect("127.0.0.1", port)
            deadline = time.monotonic() + 10
            while not codes and time.monotonic() < deadline:
                client.loop(timeout=0.2)
            client.disconnect()
            return codes[0]
        assert not connack(password).is_failure
        assert connack(password + "x").is_failure
    finally:
        broker.terminate()
        broker.wait(10)


def test_provision_cli_reports_lines_and_exits_non_zero(tmp_path, reg):
    path = write_csv(tmp_path / "k.csv", [row(1), row(2, lon="200")])
    done = subprocess.run([sys.executable, "-c", "from kiosk.fleet.cli import main; main()",
                           "provision", "--csv", str(path), "--db", str(tmp_path / "fleet.sqlite3"),
                           "--out", str(tmp_path / "out"), "--broker", "mqtt.example.go.th"],
                          cwd=ROOT_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "k.csv:line 3: kiosk.lon" in done.stderr
    assert "1 bundle(s)" in done.stdout and "1 row(s) refused" in done.stdout


def test_provision_example_csv_is_clean(tmp_path):
    registry = sample_registry(tmp_path / "fleet.sqlite3")
    try:
        result = provision(ROOT_DIR / "provisioning/kiosks.example.csv", tmp_path / "out",
                           registry=registry, broker="mqtt.example.go.th")
    finally:
        registry.close()
    assert result.problems == [] and len(result.bundles) == 3


def test_provision_problems_never_quote_an_id_shaped_value(tmp_path, reg):
    """Found by the provisioning / registry CSV fuzzer: a refused kiosk id, coordinate or
    service was quoted with ``!r``, so a citizen ID typed into the wrong cell reached the
    problem list, the terminal and the CLI's log."""
    cid = "1101700203451"
    rows = [row(1, kiosk_id=cid), row(2, lat=cid + "N"), row(3, services=f"id-card; {cid}"),
            row(4, kiosk_id=f"k-{cid[0]}-{cid[1:5]}-{cid[5:10]}-{cid[10:12]}-{cid[12]}")]
    result = provision(write_csv(tmp_path / "k.csv", rows), tmp_path / "out", registry=reg,
                       broker="mqtt.example.go.th")
    assert result.bundles == [] and len(result.problems) == 4
    assert [p.split(":")[1].strip() for p in result.problems] == ["kiosk_id", "lat", "services",
                                                                  "kiosk_id"]
    for problem in result.problems:
        assert not re.search(r"\d{13}", problem) and "1-1017-00203-45-1" not in problem, problem
        assert "#" in problem


def test_provision_field_over_the_csv_limit_refuses_the_file_naming_its_line(tmp_path, reg):
    """An unclosed quote takes the rest of the file into one field: the csv module's own error
    must not escape, and no bundle is written from a file read only in part."""
    path = write_csv(tmp_path / "k.csv", [row(1)])
    path.write_text(path.read_text() + 'cnx-2,"' + "x" * 140_000, encoding="utf-8")
    with pytest.raises(ProvisionError, match=r"line 3: a field is longer than 131,072 "
                       r"characters; close the quote"):
        provision(path, tmp_path / "out", registry=reg, broker="mqtt.example.go.th")
    assert not (tmp_path / "out").exists()
