"""``kiosk-fleet serve``: the console under waitress, a production WSGI server, behind the
agency's TLS reverse proxy (docs/ops.md)."""

import logging
from pathlib import Path

from kiosk.errors import ConfigError
from kiosk.fleet.collector import read_password
from kiosk.fleet.console.app import Broker, Settings, create_app
from kiosk.fleet.console.auth import read_users
from kiosk.fleet.console.map import OPENSTREETMAP
from kiosk.fleet.db import DEFAULT_DB

log = logging.getLogger(__name__)


def add_arguments(parser):
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="the fleet database, a path or postgresql:// URL "
                             "(default %(default)s)")
    parser.add_argument("--users", type=Path, required=True, metavar="FILE",
                        help="the users file `kiosk-fleet users` manages")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default %(default)s: the proxy's side)")
    parser.add_argument("--port", type=int, default=8080, help="(default %(default)s)")
    parser.add_argument("--proxy-hops", type=int, default=0, metavar="N",
                        help="trust N reverse proxies' X-Forwarded-For/-Proto/-Host "
                             "(1 behind the agency's proxy; default %(default)s)")
    parser.add_argument("--secret-file", type=Path,
                        help="file whose first line signs the session cookies (default: a new "
                             "secret each start, which logs everyone out)")
    parser.add_argument("--tiles", default=OPENSTREETMAP, metavar="URL-TEMPLATE",
                        help="the map's tile server, {z}/{x}/{y} in the URL, or 'none' for a "
                             "plain background with province labels (default %(default)s)")
    parser.add_argument("--threads", type=int, default=8, help="(default %(default)s)")
    broker = parser.add_argument_group("commands (leave out for a read-only console)")
    broker.add_argument("--broker-host", help="the MQTT broker commands go through")
    broker.add_argument("--broker-port", type=int, default=1883, help="(default %(default)s)")
    broker.add_argument("--broker-username", default="ops",
                        help="the account that sends commands (default %(default)s)")
    broker.add_argument("--broker-password-file", type=Path,
                        help="file holding that account's password (first line)")
    broker.add_argument("--broker-ca-file", type=Path, help="CA certificate: connect with TLS")


def settings_of(args):
    read_users(args.users)  # a bad file fails here, with its reason, not at the first login
    secret = None
    if args.secret_file:
        try:
            secret = args.secret_file.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeError):
            secret = ""
        if len(secret) < 32:
            raise ConfigError(["needs a first line of 32 characters or more"],
                              f"--secret-file {args.secret_file}")
    broker = None
    if args.broker_host:
        broker = Broker(args.broker_host, args.broker_port, args.broker_username,
                        read_password(args.broker_password_file), args.broker_ca_file)
    return Settings(db=args.db, users=args.users, broker=broker, secret_key=secret,
                    proxy_hops=args.proxy_hops,
                    tiles=None if args.tiles.lower() == "none" else args.tiles)


def main(args):
    import waitress  # noqa: PLC0415 (only this verb needs it)

    app = create_app(settings_of(args))
    print(f"console: http://{args.host}:{args.port}/", flush=True)
    waitress.serve(app, host=args.host, port=args.port, threads=args.threads,
                   ident="kiosk-console")
    return 0
