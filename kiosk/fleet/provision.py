"""``kiosk-fleet provision``: an agency's kiosk list (CSV) -> one first-boot bundle per kiosk.

Why: agencies keep their kiosks in a spreadsheet. Each row becomes a folder to copy onto that
kiosk's boot partition (``kiosk firstboot`` applies it): a ``kiosk.toml`` validated by the same
schema as on the kiosk, plus MQTT credentials — a generated password (``mqtt-password``) or, with
``--ca/--ca-key``, a client certificate signed by the agency's CA (``mqtt-client.crt/.key``). The
batch also gets the broker's side: ``_broker/passwd`` (Mosquitto ``$7$`` hashes, as
mosquitto_passwd writes) and ``_broker/acl`` (each account writes only its own topics).

CSV (UTF-8 with or without BOM, or cp874 as Thai Excel saves it), one row per kiosk, header::

    kiosk_id,service_point_id,name_th,name_en,agency,ministry,province,lat,lon[,services]

A kiosk's services (ids, Thai and English names, declared no-copy status) are its service
point's in the registry of service points (``kiosk-fleet registry import``), so the ids its
visits carry are registry ids. The optional ``services`` column narrows them: registry service
ids separated by ``;``, for a counter that offers only some of its point's services. Several
kiosks (counters) may share a service point id.

A bad row is reported with its line number and skipped; the good rows still get bundles. Each
bundle is written in a temporary folder and renamed into place, so a folder under ``--out`` is
always complete. An existing bundle is never overwritten (its password is on the broker).

A client certificate is valid for ``--cert-days`` (default :data:`CERT_DAYS`), never past the
agency CA's own expiry (such a row is refused, naming both dates). Once its bundle is in place,
its serial and validity are recorded in the fleet database (``kiosk_cert``), where the
collector's ``cert_expiring`` alarm and the console read them (docs/broker.md).
"""

import argparse
import csv
import datetime as dt
import io
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomli_w
from cryptography import x509

from kiosk import config as kiosk_config
from kiosk.accounts import MTLS_PORT, PASSWORD_PORT, password_hash
from kiosk.bundle import credential_path
from kiosk.errors import ConfigError, MessageRejected, ProvisionError, RegistryError
from kiosk.fleet.db import DEFAULT_DB, open_database
from kiosk.fleet.registry import Registry
from kiosk.fleet.registry_csv import decode, records_by_line
from kiosk.telemetry import topics
from kiosk.visit import OTHER_SERVICE

log = logging.getLogger(__name__)

COLUMNS = ("kiosk_id", "service_point_id", "name_th", "name_en", "agency", "ministry",
           "province", "lat", "lon")
#: Optional: which of the point's registry services the kiosk offers (default all).
SERVICES = "services"
#: Days a kiosk's client certificate is valid: a copied SD card connects at most this long.
CERT_DAYS = 365
# Beside the bundles, under a name no kiosk id can take (ids start with a letter or digit), so
# no kiosk's boot bundle can ever hold the batch's password hashes.
BROKER_DIR = "_broker"


def add_arguments(parser):
    parser.add_argument("--csv", required=True, metavar="FILE", help="the agency's kiosk list")
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the fleet database holding the registry of service points, a "
                        "path or postgresql:// URL (default %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the bundles")
    parser.add_argument("--broker", required=True, metavar="HOST", help="MQTT broker host name")
    parser.add_argument("--port", type=int, help=f"MQTT broker port (default {MTLS_PORT} with "
                        f"client certificates, {PASSWORD_PORT} with passwords)")
    parser.add_argument("--broker-ca", metavar="FILE",
                        help="CA certificate that signs the broker (default: the system CAs)")
    parser.add_argument("--ca", metavar="FILE", help="agency CA certificate for client certs")
    parser.add_argument("--ca-key", metavar="FILE", help="private key of --ca")
    parser.add_argument("--cert-days", type=_positive_days, default=CERT_DAYS, metavar="DAYS",
                        help="days each client certificate is valid, at most until --ca "
                        "expires (default %(default)s)")
    parser.add_argument("--ntp", action="append", default=[], metavar="HOST",
                        help="agency NTP server (repeat for several)")


def _positive_days(text):
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of days, 1 or more")
    return days


def main(args):
    if bool(args.ca) != bool(args.ca_key):
        raise ProvisionError("--ca and --ca-key go together; give both or neither")
    fleet = open_database(args.db)  # the registry's database, and where certificates go
    try:
        result = provision(
            Path(args.csv), Path(args.out), registry=Registry(fleet.database),
            broker=args.broker, port=args.port,
            broker_ca=Path(args.broker_ca) if args.broker_ca else None,
            ca=(Path(args.ca), Path(args.ca_key)) if args.ca else None, ntp_servers=args.ntp,
            cert_days=args.cert_days, fleet=fleet, progress=_progress_printer(sys.stderr))
    finally:
        fleet.close()
    for problem in result.problems:
        print(f"{args.csv}:{problem}", file=sys.stderr)
    print(f"provision: {len(result.bundles)} bundle(s) in {args.out}, "
          f"{len(result.problems)} row(s) refused (encoding {result.encoding})")
    return 1 if result.problems else 0


class Result:
    """What a run produced: bundle folders, ``line N: ...`` problems, the CSV's encoding."""

    def __init__(self, encoding):
        self.encoding = encoding
        self.bundles = []
        self.problems = []


def read_csv_text(path):
    """The CSV's text and encoding, as the registry reads its files (:func:`decode`)."""
    try:
        return decode(Path(path).read_bytes(), str(path))
    except RegistryError as exc:
        raise ProvisionError(str(exc)) from None


def provision(csv_path, out, *, registry, broker, port=None, broker_ca=None, ca=None,
              ntp_servers=(), cert_days=CERT_DAYS, fleet=None, progress=None):
    """Write one bundle per good row and the batch's broker files; return a :class:`Result`.

    ``registry`` (a :class:`kiosk.fleet.registry.Registry`) gives each kiosk its service
    point's services as registered now. ``port`` defaults to the broker's listener for the
    bundle's kind of credential (docs/broker.md): mutual TLS with ``ca``, TLS with a password
    without. With ``ca`` (``(cert, key)`` files), each client certificate is valid for
    ``cert_days``, and a row whose certificate would outlive the CA is refused; ``fleet`` (a
    :class:`kiosk.fleet.db.FleetDb`, as ``main`` passes) records each certificate whose bundle
    is in place, and a failed record is the row's problem (its bundle stays: it is complete).
    """
    now = dt.datetime.now(dt.UTC)
    if port is None:
        port = MTLS_PORT if ca is not None else PASSWORD_PORT
    if ca is not None:
        ca = (*ca, _read_cert(ca[0]).not_valid_after_utc)
    text, encoding = read_csv_text(csv_path)
    unreadable = []
    records = list(records_by_line(csv.reader(io.StringIO(text, newline="")), unreadable))
    if unreadable:  # the rest of the file is unread: no bundle from a file read in part
        raise ProvisionError(f"{csv_path}: {unreadable[0]}; no bundle was written")
    header = records[0][1] if records else []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ProvisionError(f"{csv_path}: line 1: missing column(s) {', '.join(missing)}; "
                             f"the header is {','.join(COLUMNS)}")
    rows = [(line, dict(zip(header, fields, strict=False))) for line, fields in records[1:]
            if any(field.strip() for field in fields[:len(header)])]
    out.mkdir(parents=True, exist_ok=True)
    result = Result(encoding)
    accounts, seen = [], {}
    for done, (line, row) in enumerate(rows, start=1):
        kiosk_id = (row.get("kiosk_id") or "").strip()
        try:
            if kiosk_id in seen:
                raise ProvisionError(f"kiosk_id: {kiosk_id!r} is already on line {seen[kiosk_id]}; "
                                     "give every kiosk its own id")
            services = _services(registry.service_point(
                (row.get("service_point_id") or "").strip(), now), row.get(SERVICES))
            bundle, password, cert = _write_bundle(
                row, services, out, source=f"{csv_path}:{line}", broker=broker, port=port,
                broker_ca=broker_ca, ca=ca, cert_days=cert_days, ntp_servers=ntp_servers)
        except ProvisionError as exc:
            result.problems.append(f"line {line}: {exc}")
        else:
            seen[kiosk_id] = line
            result.bundles.append(bundle)
            if password is not None:
                accounts.append((kiosk_id, password))
            if cert is not None and fleet is not None:
                problem = _record_cert(fleet, kiosk_id, cert, now)
                if problem:
                    result.problems.append(f"line {line}: {problem}")
        if progress:
            progress(done, len(rows), kiosk_id)
    if result.bundles:
        _write_broker_files(out / BROKER_DIR, accounts)
    return result


def _kiosk_toml(row, services, *, broker, port, broker_ca, with_cert, ntp_servers):
    kiosk = {"id": row["kiosk_id"].strip()}
    kiosk |= {key: (row.get(key) or "").strip() for key in COLUMNS[1:7]}
    for key in ("lat", "lon"):
        value = (row.get(key) or "").strip()
        try:
            kiosk[key] = float(value)
        except ValueError:
            raise ProvisionError(f"{key}: {value!r} is not a number; write degrees like "
                                 "13.7294") from None
    kiosk["mode"] = "production"
    mqtt = {"host": broker, "port": port, "tls": True}
    if broker_ca:
        mqtt["ca_file"] = credential_path("mqtt-ca.crt")
    if with_cert:
        mqtt["cert_file"] = credential_path("mqtt-client.crt")
        mqtt["key_file"] = credential_path("mqtt-client.key")
    else:
        mqtt["password_file"] = credential_path("mqtt-password")
    doc = {"kiosk": kiosk, "services": services, "mqtt": mqtt}
    if ntp_servers:
        doc["time"] = {"ntp_servers": list(ntp_servers)}
    header = (f"# kiosk.toml for {kiosk['id']}, "
              "made by kiosk-fleet provision. Copy this folder's files onto the kiosk's boot\n"
              "# partition; kiosk firstboot applies them and removes the secrets.\n")
    return header + tomli_w.dumps(doc)


def _services(point, cell):
    """The services of the registry's ``point`` a kiosk offers, as its config lists them: all
    of them, or those the ``services`` cell names (ids separated by ``;``), in its order."""
    if point is None:
        raise ProvisionError("service_point_id: not in the registry of service points; import "
                             "the programme's list first (kiosk-fleet registry import FILE) or "
                             "correct the id")
    registered = {service.id: service for service in point.services}
    wanted = [item.strip() for item in (cell or "").split(";") if item.strip()]
    unknown = [service_id for service_id in wanted if service_id not in registered]
    if unknown:
        raise ProvisionError(
            f"services: {', '.join(map(repr, unknown))} not registered at service point "
            f"{point.id!r} (it has {', '.join(registered) or 'none'}); add the service to the "
            "registry (kiosk-fleet registry import FILE), or name only registered ids (an "
            "empty cell gives the kiosk all of them)")
    chosen = [registered[service_id] for service_id in wanted] or list(point.services)
    if not chosen:
        raise ProvisionError(f"services: service point {point.id!r} has none in the registry; "
                             "add its services there and import it again")
    if any(s.id == OTHER_SERVICE for s in chosen):  # imported before the id was reserved
        raise ProvisionError(f"services: service point {point.id!r} registers a service with "
                             f"the id {OTHER_SERVICE!r}, which the kiosk keeps for its \"other "
                             "service\" choice; give it its own id in the registry and import "
                             "it again")
    return [{"id": s.id, "name_th": s.name_th, "name_en": s.name_en, "no_copy": s.no_copy}
            for s in chosen]


def _write_bundle(row, services, out, *, source, broker, port, broker_ca, ca, cert_days,
                  ntp_servers):
    """Validate one row and write its bundle folder; returns (folder, password or None,
    certificate ``(serial_hex, not_before, not_after)`` or None). ``ca`` is ``(cert, key,
    the CA's not-after)``."""
    kiosk_id = (row.get("kiosk_id") or "").strip()
    try:
        topics.check_kiosk_id(kiosk_id)
    except MessageRejected as exc:
        raise ProvisionError(f"kiosk_id: {kiosk_id!r}: {exc}") from None
    text = _kiosk_toml({**row, "kiosk_id": kiosk_id}, services, broker=broker, port=port,
                       broker_ca=broker_ca, with_cert=ca is not None, ntp_servers=ntp_servers)
    try:
        kiosk_config.parse(text, source)
    except ConfigError as exc:
        raise ProvisionError("; ".join(exc.problems)) from None
    target = out / kiosk_id
    if target.exists():
        raise ProvisionError(f"kiosk_id: bundle {target} already exists; remove it or use "
                             "another --out (its password is already on the broker)")
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".{kiosk_id}."))
    try:
        (tmp / "kiosk.toml").write_text(text, encoding="utf-8")
        password = cert = None
        if ca is None:
            password = secrets.token_urlsafe(24)
            _write_private(tmp / "mqtt-password", password + "\n")
        else:
            ca_cert, ca_key, ca_not_after = ca
            cert = _sign_client_cert(tmp, kiosk_id, ca_cert, ca_key, cert_days)
            if cert[2] > ca_not_after:
                # The broker would refuse it from the CA's expiry on, with no alarm first.
                stamp = "%Y-%m-%d %H:%M UTC"
                raise ProvisionError(
                    f"--cert-days {cert_days}: the certificate would expire "
                    f"{cert[2]:{stamp}}, after the agency CA {ca_cert} does "
                    f"({ca_not_after:{stamp}}); renew the CA, or give fewer --cert-days")
        if broker_ca:
            shutil.copyfile(broker_ca, tmp / "mqtt-ca.crt")
        os.chmod(tmp, 0o700)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, password, cert


def _record_cert(fleet, kiosk_id, cert, issued):
    """Record a certificate whose bundle is in place; a problem (str) if it could not be."""
    serial, not_before, not_after = cert
    try:
        fleet.add_certificate(kiosk_id, serial=serial, not_before=not_before,
                              not_after=not_after, issued=issued)
    except Exception as exc:  # a database error of either driver; the bundle is good
        log.warning("certificate of %s not recorded", kiosk_id, exc_info=True)
        return (f"bundle written, but its certificate (serial {serial}, expires "
                f"{not_after:%Y-%m-%d}) was not recorded in the fleet database "
                f"{fleet.location}: {type(exc).__name__}: {exc}; no cert_expiring alarm will "
                "warn of it until it is recorded")
    return None


def _read_cert(path):
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"{path}: not a readable PEM certificate ({exc})") from None


def _sign_client_cert(folder, kiosk_id, ca_cert, ca_key, days):
    """A P-256 key and a certificate whose CN is the kiosk id (the broker's user name), valid
    ``days``; returns ``(serial_hex, not_before, not_after)`` as read from the certificate."""
    def openssl(*args):
        done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True)
        if done.returncode != 0:
            raise ProvisionError(f"openssl {args[0]} failed for {kiosk_id!r}: "
                                 f"{done.stderr.strip().splitlines()[-1:]}")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "mqtt-client.key", "-out", "client.csr", "-subj", f"/CN={kiosk_id}")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", "client.csr", "-CA", str(Path(ca_cert).resolve()),
            "-CAkey", str(Path(ca_key).resolve()), "-CAcreateserial", "-CAserial",
            "ca.srl", "-out", "mqtt-client.crt", "-days", str(days), "-extfile", "client.ext")
    for leftover in ("client.csr", "client.ext", "ca.srl"):
        (folder / leftover).unlink(missing_ok=True)
    os.chmod(folder / "mqtt-client.key", 0o600)
    cert = _read_cert(folder / "mqtt-client.crt")
    return f"{cert.serial_number:x}", cert.not_valid_before_utc, cert.not_valid_after_utc


def _write_broker_files(folder, accounts):
    """The batch's Mosquitto password lines and the ACL patterns every kiosk account needs."""
    folder.mkdir(exist_ok=True)
    if accounts:
        _write_private(folder / "passwd",
                       "".join(f"{kiosk_id}:{password_hash(pw)}\n" for kiosk_id, pw in accounts))
    root = topics.ROOT
    _write_private(folder / "acl", f"""\
# Kiosk accounts (user name = kiosk id = client id, or the certificate's CN with
# use_identity_as_username): each writes only its own topics and reads its commands and acks.
# Merge into the broker's acl_file next to the collector and ops accounts (docs/broker.md).
pattern write {root}/kiosk/%u/+
pattern read {root}/cmd/%u/#
pattern read {root}/ack/%u/#
""")


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _progress_printer(stream):
    """Progress on long batches: a live counter on a terminal, every 10 % in a log."""
    def show(done, total, kiosk_id):
        if stream.isatty():
            end = "\n" if done == total else ""
            print(f"\rprovision: {done}/{total} {kiosk_id[:40]:<40}", end=end, file=stream,
                  flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(f"provision: {done}/{total} rows", file=stream, flush=True)
    return show
