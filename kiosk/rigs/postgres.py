"""A private PostgreSQL cluster in a temp directory, for the tests and the fleet benchmark.

The cluster lives in a directory owned by an unprivileged user (the server refuses to run as
root), listens on a Unix socket only (``listen_addresses=''``) and trusts local connections;
``initdb --no-sync`` and ``pg_ctl`` take about a second. Durability is off (``fsync=off``): it
holds nothing worth keeping.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Debian's server binaries (postgresql-15 on Debian 12), the newest if several are installed.
PG_BIN = Path(os.environ.get("KIOSK_PG_BIN") or max(
    Path("/usr/lib/postgresql").glob("*/bin"), key=lambda bin_dir: int(bin_dir.parent.name),
    default=Path("/usr/lib/postgresql/15/bin")))
#: Debian's package creates ``postgres``; ``nobody`` serves where it did not.
PG_USERS = ("postgres", "nobody")


class Cluster:
    """One running cluster: ``url(dbname)``, ``create_database()``, ``data_bytes()``."""

    def __init__(self, root, user):
        self.root, self.user = Path(root), user
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self._made = 0

    def _run(self, *argv):
        result = subprocess.run(["runuser", "-u", self.user, "--", *map(str, argv)],
                                capture_output=True, text=True, timeout=60)
        if result.returncode:
            raise RuntimeError(f"{' '.join(map(str, argv))} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()}")
        return result.stdout

    def start(self):
        self._run(PG_BIN / "initdb", "--no-sync", "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale", "C", "-D", self.data)
        self._run("mkdir", "-m", "700", self.sockets)
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w",
                  "-o", f"-k {self.sockets} -c listen_addresses='' -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off", "start")

    def restart(self):
        """Stop the server and start it again with its options: every open connection is cut.
        A fast (clean) stop, not an immediate one: this cluster runs with
        ``synchronous_commit=off`` for speed, so a crash would lose commits it had confirmed,
        which production settings do not."""
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.root / "server.log",
                  "-m", "fast", "-w", "restart")

    def stop(self):
        try:
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname):
        return f"postgresql://postgres@/{dbname}?host={self.sockets}"

    def execute(self, sql, dbname="postgres"):
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, template="template0"):
        """A new database's name: empty (from ``template0``, nothing left by another), or a copy
        of ``template``, which no one may be connected to. Copied file by file: with fsync off
        that is twice as fast as the default, which writes every page through the WAL."""
        self._made += 1
        name = f"fleet_{os.getpid()}_{self._made}"
        self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
        return name

    def drop_database(self, name):
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def data_bytes(self, name):
        """The bytes on disk of database ``name`` and of the write-ahead log, after a
        checkpoint has written the heap."""
        import psycopg

        self.execute("CHECKPOINT")
        with psycopg.connect(self.url(name)) as conn:
            (oid,) = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
        files = [*(self.data / "base" / str(oid)).iterdir(), *(self.data / "pg_wal").iterdir()]
        return b"".join(p.read_bytes() for p in files if p.is_file())


def _user():
    for name in PG_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(f"none of the users {PG_USERS} exists to run PostgreSQL as")


def start_cluster():
    """A started :class:`Cluster` in a new temp directory; RuntimeError with the reason (and
    the server log's tail) when PostgreSQL is missing or cannot start."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL is not installed at {PG_BIN} (./dev setup installs "
                           "Debian's postgresql package)")
    user = _user()
    root = tempfile.mkdtemp(prefix="kiosk-pg-")
    os.chown(root, user.pw_uid, user.pw_gid)
    cluster = Cluster(root, user.pw_name)
    try:
        cluster.start()
    except Exception as exc:
        log = Path(root) / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL could not start: {exc}\n{detail}") from exc
    return cluster
