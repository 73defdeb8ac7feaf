"""``kiosk-fleet users add|remove|list|passwd``: the console's users file (argon2 hashes)."""

import getpass
import sys
from pathlib import Path

from kiosk.errors import ConfigError
from kiosk.fleet.console import auth


def add_arguments(parser):
    parser.add_argument("action", choices=("add", "remove", "list", "passwd"))
    parser.add_argument("name", nargs="?", help="the user (add, remove, passwd)")
    parser.add_argument("--users", type=Path, required=True, metavar="FILE",
                        help="the users file (created with mode 0600 by the first add)")
    parser.add_argument("--role", choices=auth.ROLES, default="viewer",
                        help="add: viewer (reads) or operator (also sends commands); "
                             "default %(default)s")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input "
                             "instead of asking twice")


def _password(args):
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError(["the two passwords differ"], "password")
    return first


def main(args):
    exists = args.users.exists()
    users = auth.read_users(args.users) if exists else {}
    if args.action == "list":
        for user in sorted(users.values(), key=lambda u: u.name):
            print(f"{user.name:<24} {user.role}")
        return 0
    if not args.name or not auth.NAME.match(args.name):
        raise ConfigError(["give a user name: lowercase letters, digits, . _ -, starting "
                           "with a letter"], "users")
    if args.action == "add":
        if args.name in users:
            raise ConfigError([f"user {args.name} exists; use passwd or remove"], "users")
        users[args.name] = auth.User(args.name, args.role, auth.hash_password(_password(args)))
    elif args.name not in users:
        raise ConfigError([f"no user {args.name} in {args.users}"], "users")
    elif args.action == "remove":
        del users[args.name]
    else:
        old = users[args.name]
        users[args.name] = auth.User(old.name, old.role, auth.hash_password(_password(args)))
    auth.write_users(args.users, users)
    print(f"{args.action} {args.name}: done")
    return 0
