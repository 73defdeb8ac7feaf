"""``kiosk cert``: renew the kiosk's MQTT client certificate, on the device, as root.

Run by ``kiosk-cert.service`` (daily and shortly after boot by its timer, and when the kiosk
leaves a certificate it received: ``kiosk-cert.path``). One run does what is due:

1. **install**: with a request pending, a response on file that certifies the pending key for
   this kiosk, from the current certificate's issuer, valid now, replaces the credentials in
   ``/etc/kiosk/credentials`` (:mod:`kiosk.renewal.install`); the kiosk sees ``installed.json``
   and restarts when idle to load it;
2. **request**: when the certificate in use expires within ``mqtt.renew_before_days`` and no
   request is pending, a new key and CSR (:mod:`kiosk.renewal.request`) for the kiosk to relay.
   A readable pending key is never replaced: the signing service may have signed it already
   (and sends that certificate again for the same key, refusing a new key while it is valid),
   so a request gone missing or unanswered for :data:`CSR_REWRITE_AGE` gets its CSR written
   again from the same key.

The kiosk process can write none of root's files; the only thing it hands over, the response,
is read as untrusted. Every line logged says what was done with the serial and dates, never key
material. Exit status 0 when done or nothing was due, 1 when the certificate in use has expired
(the broker refuses it: a new bundle is needed) or cannot be read.
"""

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from kiosk import config as kiosk_config
from kiosk.errors import ConfigError
from kiosk.renewal import files, install, request
from kiosk.renewal.install import serial, when

log = logging.getLogger(__name__)

CONFIG = "/etc/kiosk/kiosk.toml"
#: A request with no certificate this long after its CSR was written gets the CSR written again
#: from the same key (the relay sends a changed file at once): the signing service may have lost
#: it, refused it before a fix, or signed it while the kiosk was offline.
CSR_REWRITE_AGE = dt.timedelta(days=7)


@dataclass(frozen=True)
class Paths:
    """Where one run reads and writes; the defaults are the appliance's, tests pass folders of
    their own. ``response`` None: in the config's ``storage.data_dir``."""

    config: Path = Path(CONFIG)
    credentials: Path = files.CREDENTIALS_DIR
    pending_key: Path = files.PENDING_KEY
    renewal_dir: Path = files.RENEWAL_DIR
    response: Path | None = None


def add_arguments(parser):
    parser.add_argument("--config", default=CONFIG,
                        help="the kiosk's config: its id, mqtt.renew_before_days, "
                        "storage.data_dir (default %(default)s)")
    parser.add_argument("--credentials", default=str(files.CREDENTIALS_DIR), metavar="DIR",
                        help="the installed MQTT credentials (default %(default)s)")
    parser.add_argument("--pending-key", default=str(files.PENDING_KEY), metavar="FILE",
                        help="the key of the pending request, root's (default %(default)s)")
    parser.add_argument("--renewal-dir", default=str(files.RENEWAL_DIR), metavar="DIR",
                        help=f"where the request ({files.REQUEST_NAME}) and the install record "
                        f"({files.INSTALLED_NAME}) go (default %(default)s)")
    parser.add_argument("--response", metavar="FILE",
                        help="the certificate the kiosk received (default: "
                        f"STORAGE.DATA_DIR/{files.RESPONSE_NAME} of the config)")


def main(args):
    paths = Paths(Path(args.config), Path(args.credentials), Path(args.pending_key),
                  Path(args.renewal_dir), Path(args.response) if args.response else None)
    return run(paths, now=dt.datetime.now(dt.UTC))


def run(paths, *, now):
    """One run as the module says; returns the exit status. ``now`` is aware UTC."""
    cfg = _read_config(paths.config)
    response = paths.response or files.response_path(cfg.storage.data_dir)
    cert_path = paths.credentials / files.CERT_NAME
    try:
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        log.info("cert: no client certificate in %s: this kiosk uses a password account; "
                 "nothing to renew", paths.credentials)
        return 0
    except (OSError, ValueError) as exc:
        log.error("cert: cannot read the client certificate %s (%s): the kiosk needs a new "
                  "bundle (kiosk-fleet provision)", cert_path, exc)
        return 1
    if now < current.not_valid_before_utc:
        log.warning("cert: the clock (%s) is before certificate %s was issued (%s): it is not "
                    "synchronised yet; nothing done until it is", when(now), serial(current),
                    when(current.not_valid_before_utc))
        return 0
    pending = request.read_pending(paths.pending_key)
    if pending is None:
        if response.exists() or response.is_symlink():
            log.info("cert: no request pending: the response %s is ignored", response)
    else:
        installed = _take_response(paths, cfg.kiosk.id, pending[0], current, response, now)
        if installed is not None:
            current, pending = installed, None
    return _ask(paths, cfg, current, pending, now)


def _read_config(path):
    """The kiosk's own file over the packaged defaults. Not the remote layer: root reads nothing
    of the kiosk user's but the response."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read it: {exc}"], str(path)) from None
    return kiosk_config.parse(text, str(path))


def _take_response(paths, kiosk_id, key, current, response, now):
    """Install the response if it is the pending request's certificate: the certificate now in
    use, or None when nothing was installed."""
    try:
        cert = install.read_response(response)
        if cert is None:
            log.info("cert: request pending; no certificate received yet (%s)", response)
            return None
        install.check(cert, key=key, kiosk_id=kiosk_id, current=current, now=now,
                      cas=install.read_cas(paths.credentials / "ca.crt"))
    except install.NotYet as exc:
        log.info("cert: %s", exc)
        return None
    except install.Refused as exc:
        log.warning("cert: response refused: %s; nothing changed, the request stays pending",
                    exc)
        return None
    key_pem = paths.pending_key.read_bytes()
    install.install(cert, key, key_pem, credentials=paths.credentials,
                    renewal_dir=paths.renewal_dir, pending_key=paths.pending_key, now=now)
    log.info("cert: installed certificate %s, valid %s to %s, in %s (replaced certificate %s, "
             "kept as %s); the kiosk loads it at its next idle restart", serial(cert),
             when(cert.not_valid_before_utc), when(cert.not_valid_after_utc), paths.credentials,
             serial(current), files.previous(files.CERT_NAME, paths.pending_key))
    return cert


def _ask(paths, cfg, current, pending, now):
    """Request a new certificate when the one in use is due; the exit status."""
    expires = current.not_valid_after_utc
    due = expires - dt.timedelta(days=cfg.mqtt.renew_before_days)
    expired = now >= expires
    if expired:
        log.error("cert: certificate %s EXPIRED %s: the broker refuses it, so a renewal cannot "
                  "reach the signing service; install a new bundle (kiosk-fleet provision) on "
                  "site", serial(current), when(expires))
    elif now < due:
        log.info("cert: certificate %s is valid until %s; renewal is due from %s: nothing to do",
                 serial(current), when(expires), when(due))
        return 0
    csr_path = paths.renewal_dir / files.REQUEST_NAME
    if pending is not None:
        written = _written(csr_path)
        if written is not None and abs(now - written) < CSR_REWRITE_AGE:
            log.info("cert: certificate %s expires %s; the request of %s is pending",
                     serial(current), when(expires), when(pending[1]))
        else:
            request.write_csr(pending[0], cfg.kiosk.id, csr_path)
            log.info("cert: wrote the request of %s again to %s (%s)", when(pending[1]),
                     csr_path, "it was missing" if written is None else
                     f"unanswered since {when(written)}")
        return 1 if expired else 0
    request.make_request(cfg.kiosk.id, paths.pending_key, csr_path)
    log.info("cert: certificate %s expires %s: made a new key and the request %s for CN=%s; "
             "the kiosk relays it to the signing service", serial(current), when(expires),
             csr_path, cfg.kiosk.id)
    return 1 if expired else 0


def _written(path):
    """When the file at ``path`` was last written (aware UTC), None when it is missing."""
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    except FileNotFoundError:
        return None
