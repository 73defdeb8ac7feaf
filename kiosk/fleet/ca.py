"""``kiosk-fleet ca``: sign the certificate renewals kiosks request over MQTT.

A kiosk's root renewal unit makes a new key and a request (CSR, subject ``CN=<kiosk id>``);
the kiosk publishes it on ``citizeninfo/v1/kiosk/<id>/csr``, where the broker's ACL lets only
account ``<id>`` write. This service, as its own broker account (``ca``: reads the requests,
writes the certificates), checks each request (:func:`read_request`: its signature, a subject
that is exactly the topic's kiosk id, no extensions, a strong key) and the kiosk's standing in
the fleet database (not retired, a certificate recorded and not every one revoked), then signs
it as ``provision`` issues certificates (:func:`sign_request`) and publishes it retained on
``citizeninfo/v1/cmd/<id>/cert``. A refused request gets no answer; the refusal is logged with
the kiosk id and the reason, never the request.

The kiosk repeats its request until it has an answer, so signing is idempotent: every
certificate issued is kept under ``--issued`` by kiosk and public key (:class:`IssuedStore`),
and a request for a key that already has a valid certificate gets that one again. The request
is acknowledged to the broker (manual PUBACK) only once the certificate is recorded in the
fleet database (which clears ``cert_expiring``) and the broker has confirmed the retained
certificate; a service that dies in between gets the request again (persistent session) and
re-sends the same certificate. paho's callbacks only queue messages: the thread in
:meth:`SigningService.run` owns the database and every decision.
"""

import argparse
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import queue
import secrets
import signal
import string
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kiosk.accounts import CA, PASSWORD_PORT
from kiosk.errors import CertRefused, MessageRejected, ProvisionError, TelemetryError
from kiosk.fleet.collector import connect_keeping_session, read_password, service_client
from kiosk.fleet.db import DEFAULT_DB, open_database, utc_text
from kiosk.fleet.provision import CERT_DAYS, _positive_days
from kiosk.logsafe import never_raises, printable, redact_ids
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

#: The requests' topic filter (the ``ca`` account's one ``topic read`` row).
SUBSCRIPTION = f"{topics.ROOT}/kiosk/+/csr"
#: How long the broker keeps the session, and queues requests, while the service is down.
SESSION_EXPIRY_S = 7 * 24 * 3600
#: A certificate starts this much before it is signed: a broker whose clock is a little behind
#: the service's would otherwise refuse it as not yet valid.
BACKDATE = dt.timedelta(minutes=5)
#: Curves a kiosk key may use; RSA keys need at least MIN_RSA_BITS.
CURVES = ("secp256r1", "secp384r1")
MIN_RSA_BITS = 2048
#: Seconds to wait for the broker's PUBACK of a certificate.
PUBLISH_TIMEOUT_S = 10.0
#: A new key is signed only while the kiosk's newest valid certificate expires within this
#: many days (the kiosk asks from ``mqtt.renew_before_days``, 30 by default, before): a key
#: copied off an SD card cannot renew itself for another year whenever it likes, only race the
#: kiosk once, in the window, which one of them then loses, with a log line saying what it may
#: mean.
RENEW_WINDOW_DAYS = 31


# --- the request and the certificate (pure but for the clock it is given) -------------------


def read_request(csr_pem, kiosk_id):
    """The request of ``csr_pem`` (text or bytes) if the kiosk ``kiosk_id`` (the topic's id,
    which the broker vouches for) may have it signed; :class:`CertRefused` otherwise, saying
    why. The subject must be exactly one CN equal to ``kiosk_id``: the broker takes the CN as
    the account, so a request naming another kiosk would hand over that kiosk's topics."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except (ValueError, UnsupportedAlgorithm):
        raise CertRefused(f"{kiosk_id}: the request is not a readable PEM certificate "
                          "request") from None
    try:
        is_signed = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        is_signed = False
    if not is_signed:
        raise CertRefused(f"{kiosk_id}: the request's signature does not verify with its own "
                          "key (damaged, or not made with the key it carries)")
    attributes = [(rdn, attribute) for rdn in csr.subject.rdns for attribute in rdn]
    if not (len(attributes) == 1 and attributes[0][1].oid == NameOID.COMMON_NAME):
        raise CertRefused(f"{kiosk_id}: the request's subject must be exactly CN={kiosk_id}, "
                          f"not {len(attributes)} attribute(s)")
    if attributes[0][1].value != kiosk_id:
        raise CertRefused(f"{kiosk_id}: the request is for another kiosk's id "
                          f"(CN={printable(redact_ids(attributes[0][1].value), 64)}); a kiosk "
                          "may only renew its own certificate")
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension):
        extensions = [None]
    if extensions:
        raise CertRefused(f"{kiosk_id}: the request asks for extensions (subject alternative "
                          "names, key usages); the service sets them, ask for none")
    problem = _key_problem(csr.public_key())
    if problem:
        raise CertRefused(f"{kiosk_id}: the request's key is {problem}; use EC P-256 or "
                          f"P-384, or RSA of {MIN_RSA_BITS} bits or more")
    return csr


def _key_problem(key):
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in CURVES else f"EC on curve {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return None if key.key_size >= MIN_RSA_BITS else f"RSA of {key.key_size} bits"
    return f"of type {type(key).__name__}"


def sign_request(csr_pem, kiosk_id, *, ca_cert, ca_key, days, now):
    """A client certificate (PEM text) for the request ``csr_pem`` of kiosk ``kiosk_id``, or
    :class:`CertRefused` (:func:`read_request`). ``ca_cert`` and ``ca_key`` are the agency CA's
    loaded certificate and key (:func:`load_ca`); the certificate is valid ``days`` from
    ``now`` (aware UTC), clipped to the CA's own expiry (logged), never past it."""
    cert = issue(read_request(csr_pem, kiosk_id), kiosk_id, ca_cert=ca_cert, ca_key=ca_key,
                 days=days, now=now)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def issue(csr, kiosk_id, *, ca_cert, ca_key, days, now):
    """The certificate (an ``x509.Certificate``) for the checked request ``csr``: the
    extensions ``provision``'s certificates have (client authentication only, not a CA), a
    random serial, subject ``CN=<kiosk_id>``."""
    ca_until = ca_cert.not_valid_after_utc
    not_after = now + dt.timedelta(days=days)
    if not_after > ca_until:
        log.warning("%s: certificate clipped to the agency CA's expiry %s (asked for %s days); "
                    "renew the CA", kiosk_id, f"{ca_until:%Y-%m-%d %H:%M UTC}", days)
        not_after = ca_until
    if not_after <= now:
        raise CertRefused(f"{kiosk_id}: the agency CA expired {ca_until:%Y-%m-%d %H:%M UTC}; "
                          "renew the CA, then the kiosks' certificates")
    not_before = max(now - BACKDATE, ca_cert.not_valid_before_utc)
    key = csr.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kiosk_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=isinstance(key, rsa.RSAPublicKey),
            content_commitment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False))
    return builder.sign(ca_key, signature_hash(ca_key))


def signature_hash(ca_key):
    """The hash the agency CA signs with (its certificates and its CRLs alike): none for an
    EdDSA key, SHA-384 for an EC key above 256 bits, else SHA-256."""
    if isinstance(ca_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    if isinstance(ca_key, ec.EllipticCurvePrivateKey) and ca_key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def load_ca(cert_path, key_path):
    """``(certificate, private key)`` of the agency CA, or ProvisionError naming the file."""
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ProvisionError(f"--ca {cert_path}: not a readable PEM certificate ({exc}); give "
                             "the agency CA's certificate") from None
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ProvisionError(f"--ca-key {key_path}: not a readable unencrypted PEM private key "
                             f"({type(exc).__name__}); give the key file of --ca") from None
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise ProvisionError(f"--ca-key {key_path} is not the key of --ca {cert_path}; give the "
                             "pair the kiosk certificates were signed with")
    return cert, key


def _spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


# --- what was issued ------------------------------------------------------------------------


class IssuedStore:
    """Every certificate the service issued, one PEM file per kiosk and public key
    (``<folder>/<kiosk id>/<SHA-256 of the key>.pem``), so a repeated request gets the same
    certificate. Written whole (a temporary file renamed into place)."""

    def __init__(self, folder):
        self.folder = Path(folder)

    def _path(self, kiosk_id, public_key):
        return self.folder / kiosk_id / f"{hashlib.sha256(_spki(public_key)).hexdigest()}.pem"

    def find(self, kiosk_id, public_key, now):
        """The certificate issued to ``kiosk_id`` for ``public_key`` if it is still valid at
        ``now``, else None."""
        try:
            cert = x509.load_pem_x509_certificate(self._path(kiosk_id, public_key).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: the certificate kept for this key cannot be read (%s); signing a "
                        "new one", kiosk_id, type(exc).__name__)
            return None
        return cert if cert.not_valid_after_utc > now else None

    def keep(self, kiosk_id, cert):
        path = self._path(kiosk_id, cert.public_key())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(cert.public_bytes(serialization.Encoding.PEM))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def standing(fleet, kiosk_id):
    """Why the fleet database says ``kiosk_id`` may not renew (None if it may): retired, no
    certificate recorded (never provisioned with one), or every certificate revoked."""
    row = fleet.KioskRow.get_or_none(fleet.KioskRow.kiosk_id == kiosk_id)
    if row is not None and row.retired:
        return f"it was retired ({row.retired}); a retired kiosk is provisioned anew"
    recorded = fleet.certificates(kiosk_id)
    if not recorded:
        return ("no certificate is recorded for it in the fleet database; provision it with "
                "a certificate first (kiosk-fleet provision --ca)")
    if all(cert.revoked for cert in recorded):
        return "every certificate of it is revoked; a revoked kiosk is provisioned anew"
    return None


def too_early(fleet, kiosk_id, now, window_days):
    """Why a new key for ``kiosk_id`` is not signed yet (None when it may be): its newest
    certificate not revoked is valid beyond the renewal window."""
    newest = next((c for c in fleet.certificates(kiosk_id) if not c.revoked), None)
    if newest is None:
        return None
    until = dt.datetime.fromisoformat(newest.not_after)
    if until - now <= dt.timedelta(days=window_days):
        return None
    return (f"its certificate {newest.serial} is valid until {until:%Y-%m-%d}, beyond the "
            f"{window_days:g}-day renewal window, so this key is not the kiosk's renewal; if "
            f"the kiosk did not just renew, its key was copied: kiosk-fleet revoke {kiosk_id}")


def _is_revoked(fleet, kiosk_id, serial_hex):
    return any(cert.revoked for cert in fleet.certificates(kiosk_id)
               if cert.serial == serial_hex)


def new_correlation_id():
    """``ca-`` and random letters (never digits: a run of 13 is refused on the wire)."""
    return "ca-" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))


# --- the service ----------------------------------------------------------------------------


@dataclasses.dataclass
class Counters:
    """What the service did since start; read them from any thread."""

    signed: int = 0  # new certificates published
    resent: int = 0  # a repeated request answered with the certificate issued before
    refused: int = 0  # logged with the kiosk id and the reason; nothing sent
    ignored: int = 0  # empty payloads: a retained message deleted (kiosk-fleet revoke does)
    failed: int = 0  # database or broker trouble: not acknowledged, so it comes again


def _count_callback_failure(service, *_):
    service.counters.failed += 1


_contained = never_raises(log, counted=_count_callback_failure)
_STOP = object()


class SigningService:
    """One signing service: :meth:`run` it on the thread that is to own it, set the event to
    stop. ``db`` is the fleet database's path or URL, opened by :meth:`run` on its thread;
    ``tls`` a dict for ``paho.Client.tls_set``; ``clock()`` gives aware UTC now."""

    def __init__(self, db, host, port, username=CA, password=None, *, ca_cert, ca_key,
                 issued, cert_days=CERT_DAYS, renew_window_days=RENEW_WINDOW_DAYS, tls=None,
                 session_expiry_s=SESSION_EXPIRY_S, clock=lambda: dt.datetime.now(dt.UTC)):
        self.db_where = db
        self.host, self.port = host, port
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.issued = IssuedStore(issued)
        self.cert_days = cert_days
        self.renew_window_days = renew_window_days
        self.session_expiry_s = session_expiry_s
        self.clock = clock
        self.counters = Counters()
        self._inbox = queue.Queue()
        self._subscribed = threading.Event()
        self._client = service_client(username, password, tls, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def wait_for_subscribed(self, timeout=10.0):
        """True once subscribed to the requests (on the latest connect)."""
        return self._subscribed.wait(timeout)

    def run(self, stopping):
        """Serve until ``stopping`` (a threading.Event) is set: this thread alone reads the
        database, signs and publishes. A persistent session (clean start off) keeps the
        requests that came while the service was down."""
        fleet = open_database(self.db_where)
        connect_keeping_session(self._client, self.host, self.port, self.session_expiry_s)
        # Wakes the loop the moment ``stopping`` is set, rather than polling the queue.
        watcher = threading.Thread(target=lambda: (stopping.wait(), self._inbox.put(_STOP)),
                                   name="ca-stop", daemon=True)
        watcher.start()
        try:
            while (item := self._inbox.get()) is not _STOP:
                self._serve(fleet, *item)
        finally:
            self._client.disconnect()
            self._client.loop_stop()
            fleet.close()

    # --- paho callbacks: only enqueue --------------------------------------------------------

    @_contained
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker refused the signing service at %s:%s: %s", self.host,
                      self.port, reason_code)
            return
        client.subscribe(SUBSCRIPTION, qos=1)

    @_contained
    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            log.error("broker refused the subscription %s: %s (the ca account needs `topic "
                      "read %s` in the ACL)", SUBSCRIPTION, reason_codes, SUBSCRIPTION)
            return
        log.info("signing service subscribed to %s", SUBSCRIPTION)
        self._subscribed.set()

    @_contained
    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._subscribed.clear()
        if reason_code.is_failure:
            log.warning("signing service disconnected (%s); paho reconnects", reason_code)

    @_contained
    def _on_message(self, client, userdata, message):
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = None
        self._inbox.put((message.mid, message.qos, topic, message.payload))

    # --- the owning thread ------------------------------------------------------------------

    def _serve(self, fleet, mid, qos, topic, payload):
        """Answer one request; acknowledge it unless the database or the broker failed."""
        try:
            outcome = self._answer(fleet, topic, payload)
        except CertRefused as exc:
            self.counters.refused += 1
            log.warning("refused a certificate request: %s", exc)
        except Exception as exc:  # the database, the broker, or our own bug: not acked
            self.counters.failed += 1
            log.error("could not answer a certificate request on %s (%s: %s); it comes again",
                      _logged(topic), type(exc).__name__, printable(redact_ids(str(exc))))
            try:
                fleet.database.close()  # a broken connection is not reused
            except Exception as closing:  # it may not even close cleanly
                log.debug("closing the database after a failure: %s", type(closing).__name__)
            return
        else:
            setattr(self.counters, outcome, getattr(self.counters, outcome) + 1)
        if qos > 0:
            self._client.ack(mid, qos)

    def _answer(self, fleet, topic, payload):
        """``"signed"`` or ``"resent"`` once the certificate is recorded and published,
        ``"ignored"`` for an empty payload; CertRefused saying why not."""
        if not payload:
            return "ignored"
        if topic is None:
            raise CertRefused("a request on an undecodable topic")
        try:
            request = topics.parse_kiosk_message(topic, payload)
        except MessageRejected as exc:
            raise CertRefused(f"{_logged(topic)}: {printable(str(exc))}") from None
        if not isinstance(request, topics.CertRequest):
            raise CertRefused(f"{_logged(topic)}: not a certificate request")
        kiosk_id = request.kiosk_id
        csr = read_request(request.csr, kiosk_id)
        why_not = standing(fleet, kiosk_id)
        if why_not:
            raise CertRefused(f"{kiosk_id}: {why_not}")
        now = self.clock()
        cert = self.issued.find(kiosk_id, csr.public_key(), now)
        outcome = "resent"
        if cert is not None and _is_revoked(fleet, kiosk_id, f"{cert.serial_number:x}"):
            raise CertRefused(f"{kiosk_id}: the certificate issued for this key was revoked; "
                              "the kiosk must make a new key")
        if cert is None:
            early = too_early(fleet, kiosk_id, now, self.renew_window_days)
            if early:
                raise CertRefused(f"{kiosk_id}: {early}")
            cert = issue(csr, kiosk_id, ca_cert=self.ca_cert, ca_key=self.ca_key,
                         days=self.cert_days, now=now)
            self.issued.keep(kiosk_id, cert)
            outcome = "signed"
        fleet.add_certificate(kiosk_id, serial=f"{cert.serial_number:x}",
                              not_before=cert.not_valid_before_utc,
                              not_after=cert.not_valid_after_utc,
                              issued=now)
        # Again, now that the serial is on record: a revoke that landed while this request was
        # signed issued its CRL without it, so it is marked revoked here and never sent.
        why_not = standing(fleet, kiosk_id)
        if why_not:
            KioskCert = fleet.KioskCert
            (KioskCert.update(revoked=utc_text(now))
             .where((KioskCert.kiosk_id == kiosk_id)
                    & (KioskCert.serial == f"{cert.serial_number:x}")
                    & KioskCert.revoked.is_null()).execute())
            raise CertRefused(f"{kiosk_id}: {why_not} (while its request was signed: the "
                              "certificate is recorded revoked and not sent)")
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        info = self._client.publish(
            topics.cmd_topic(kiosk_id, "cert"),
            topics.command_payload("cert", new_correlation_id(), cert=pem),
            qos=topics.QOS["cert"], retain=topics.RETAIN["cert"])
        info.wait_for_publish(PUBLISH_TIMEOUT_S)
        if not info.is_published():
            raise TelemetryError(f"{kiosk_id}: the broker did not confirm the certificate "
                                 f"within {PUBLISH_TIMEOUT_S:g} s")
        log.info("%s a certificate for %s, valid until %s", outcome, kiosk_id,
                 f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M UTC}")
        return outcome


def _logged(topic):
    """A topic as it may be logged: anyone may publish anywhere, so never quoted raw."""
    return "<undecodable topic>" if topic is None else printable(redact_ids(topic))


# --- the kiosk-fleet ca verb ----------------------------------------------------------------


def _broker_address(text):
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r}: give HOST or HOST:PORT")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be a number 1-65535")
    return host, int(port) if port else None


def add_arguments(parser):
    parser.add_argument("--broker", required=True, type=_broker_address, metavar="HOST:PORT",
                        help=f"the central broker (port default {PASSWORD_PORT} with --tls-ca, "
                             "1883 without)")
    parser.add_argument("--username", default=CA, help="broker account (default %(default)s)")
    parser.add_argument("--password-file", type=Path,
                        help="file holding the account's password (first line)")
    parser.add_argument("--tls-ca", type=Path, metavar="FILE",
                        help="CA certificate that signs the broker: connect with TLS")
    parser.add_argument("--ca", required=True, type=Path, metavar="FILE",
                        help="the agency CA certificate that signs the kiosks' certificates")
    parser.add_argument("--ca-key", required=True, type=Path, metavar="FILE",
                        help="private key of --ca (unencrypted PEM, readable by this service "
                             "only)")
    parser.add_argument("--issued", type=Path, metavar="DIR",
                        help="folder keeping every certificate issued, so a repeated request "
                             "gets the same one (default: 'issued' beside --ca-key)")
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="fleet database where certificates are recorded, a path or "
                             "postgresql:// URL (default %(default)s)")
    parser.add_argument("--cert-days", type=_positive_days, default=CERT_DAYS, metavar="DAYS",
                        help="days each certificate is valid, at most until --ca expires "
                             "(default %(default)s)")
    parser.add_argument("--renew-window-days", type=_positive_days, default=RENEW_WINDOW_DAYS,
                        metavar="DAYS",
                        help="sign a new key only when the kiosk's newest certificate expires "
                             "within this many days; at least the kiosks' "
                             "mqtt.renew_before_days (default %(default)s)")


def main(args):
    password = read_password(args.password_file)
    ca_cert, ca_key = load_ca(args.ca, args.ca_key)
    host, port = args.broker
    if port is None:
        port = PASSWORD_PORT if args.tls_ca else 1883
    issued = args.issued or args.ca_key.resolve().parent / "issued"
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    service = SigningService(args.db, host, port, args.username, password, ca_cert=ca_cert,
                             ca_key=ca_key, issued=issued, cert_days=args.cert_days,
                             renew_window_days=args.renew_window_days,
                             tls={"ca_certs": str(args.tls_ca)} if args.tls_ca else None)
    log.info("signing certificate requests from %s:%s as %s; certificates kept in %s", host,
             port, args.username, issued)
    service.run(done)
    c = service.counters
    log.info("signed %d, resent %d, refused %d, ignored %d, failed %d", c.signed, c.resent,
             c.refused, c.ignored, c.failed)
    return 0
