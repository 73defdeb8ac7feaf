"""A real Mosquitto with the fleet's accounts and ACLs, for tests and ``kiosk demo``.

Everything lives in one work directory: ``mosquitto.conf``, the password file, the ACL file,
the test CA and certificates, the log (kept so tests can scan it for personal data) and, when
asked for, the persistence file. The broker listens on 127.0.0.1 only, on ephemeral ports that
survive :meth:`Broker.restart`. Production brokers are configured as ``docs/broker.md`` says;
this module writes the same ACL rules so the tests exercise the production policy.

Accounts: one per kiosk (user name = kiosk id = client id, so ``%u`` in the ACL patterns pins a
kiosk to its own topics), ``collector`` (reads kiosk messages, writes acks and withdraws
update commands) and ``ops`` (writes
commands, reads status/pin/health/reply); more collector accounts can be added
(:meth:`Broker.add_collector`), as production gives each collector of a share group its own.
Ops cannot write acks: a leaked ops password must not
be able to confirm visits that were never stored. A benchmark that models more kiosks than one
machine holds connections adds multiplexer accounts (:meth:`Broker.add_multiplexer`), which
publish for any kiosk id: never part of production.

Subscriptions are checked by the project's auth plugin (``provisioning/broker/``, built by
``./dev setup`` into ``.cache/broker/``), which reads the same ACL file: Mosquitto 2.0's
``acl_file`` grants every SUBSCRIBE, so without it a kiosk could join the collectors' shared
subscription and make the broker drop the visits it was handed.

Revocation (``kiosk-fleet revoke``) works on the rig's own files as on production's: the
password file (:attr:`Broker.passwd_file`), the plugin's revoked file (:attr:`Broker.revoked_file`,
whose names the plugin refuses everywhere, whatever the password file says) and, given
``crl_file``, the mutual-TLS listener's CRL, signed with the rig's CA (``ca.crt``/``ca.key``).
:meth:`Broker.reload` sends the SIGHUP that makes Mosquitto read them again.
"""

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from kiosk.accounts import CA, COLLECTOR, OPS, is_reserved, password_hash
from kiosk.errors import TelemetryError
from kiosk.telemetry import topics

log = logging.getLogger(__name__)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
#: The subscription plugin ``./dev setup`` builds from provisioning/broker/citizeninfo_auth.c.
AUTH_PLUGIN = Path(__file__).resolve().parents[2] / ".cache/broker/citizeninfo_auth.so"
#: Far above Mosquitto's default of 1000: a collector that is down for a day must find every
#: visit queued in its persistent session, not the newest thousand.
MAX_QUEUED_MESSAGES = 1_000_000
#: Unacknowledged QoS 1 messages the broker sends one client at a time; the collector commits
#: in batches before it acknowledges, so it needs a window bigger than one batch.
MAX_INFLIGHT_MESSAGES = 1000
#: Largest MQTT packet the broker reads; a bigger one ends the connection before its payload is
#: buffered. The largest legitimate message is a config command at the ceiling of
#: ``telemetry.max_command_bytes`` (1 MiB); 64 KiB on top covers topic and properties.
#: Kiosk messages stay under ``topics.MAX_KIOSK_MESSAGE_BYTES`` (64 KiB).
MAX_PACKET_BYTES = 1_048_576 + 64 * 1024
#: Bytes queued for one client's session: a day of visits for the national fleet (docs/broker.md
#: shows the sum), so the cap bounds memory without cutting a collector's day-long backlog.
MAX_QUEUED_BYTES = 1024 * 1024 * 1024
#: The retained topics of an account the plugin clears when the account is revoked (``%u``: its
#: name): every retained kiosk message and command of the contract.
REVOKED_RETAINED = tuple(
    [f"{topics.ROOT}/kiosk/%u/{kind}" for kind in topics.KIOSK_MESSAGES if topics.RETAIN[kind]]
    + [f"{topics.ROOT}/cmd/%u/{name}" for name in topics.COMMANDS if topics.RETAIN[name]])


def free_port():
    """An ephemeral TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One Mosquitto process under ``workdir``; see the module docstring for the accounts.

    ``tls=True`` adds a mutual-TLS listener (``tls_port``) that takes only client certificates
    signed by the test CA (``ca_file``) and uses the certificate's CN as the user name, and a
    TLS listener for password accounts (``password_tls_port``), as production has on 8883/8884.
    ``persistence=True`` keeps sessions and queued messages in ``mosquitto.db`` across
    :meth:`restart` (not across :meth:`kill` after the last autosave: the outbox waits for the
    collector's ack, not the broker's PUBACK, for that reason).
    ``crl_file`` (with ``tls``) is the mutual-TLS listener's ``crlfile``: it must exist before
    :meth:`start` (``kiosk-fleet crl refresh --ca ca.crt --ca-key ca.key`` of :attr:`workdir`
    writes one), and Mosquitto reads it again on :meth:`reload`.
    """

    def __init__(self, workdir, *, tls=False, persistence=False, plugin=AUTH_PLUGIN,
                 crl_file=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.is_tls = tls
        self.is_persistent = persistence
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.password_tls_port = free_port() if tls else None
        self.plugin = Path(plugin)
        self.log_path = self.workdir / "mosquitto.log"
        self._accounts = {COLLECTOR: secrets.token_urlsafe(18), OPS: secrets.token_urlsafe(18),
                          CA: secrets.token_urlsafe(18)}
        self._observers = set()
        self._multiplexers = set()
        # user -> (password, its line's hash): a reload hashes only new or changed passwords.
        self._hashes = {}
        self._collectors = [COLLECTOR]
        self._process = None
        self.ca_file = None
        if crl_file is not None and not tls:
            raise TelemetryError("a CRL needs the mutual-TLS listener; create it with tls=True")
        self.crl_file = None if crl_file is None else Path(crl_file)
        if tls:
            self._make_ca()

    @property
    def passwd_file(self):
        """Mosquitto's password file (``kiosk-fleet revoke --passwd``)."""
        return self.workdir / "passwd"

    @property
    def revoked_file(self):
        """The plugin's revoked accounts, one a line (``kiosk-fleet revoke --revoked-file``);
        absent until the first revocation."""
        return self.workdir / "revoked"

    @property
    def ca_key_file(self):
        """The test CA's private key (``ca_file`` is its certificate), for issuing CRLs."""
        return self.workdir / "ca.key" if self.is_tls else None

    # --- accounts -------------------------------------------------------------------------

    @property
    def collector_credentials(self):
        """``(username, password)`` of the collector account."""
        return COLLECTOR, self._accounts[COLLECTOR]

    @property
    def ops_credentials(self):
        """``(username, password)`` of the ops account."""
        return OPS, self._accounts[OPS]

    @property
    def ca_credentials(self):
        """``(username, password)`` of the signing service's account (``kiosk-fleet ca``)."""
        return CA, self._accounts[CA]

    def add_kiosk(self, kiosk_id, password=None):
        """Create (or renew) a kiosk account and return its password (``password``, or a new one
        when None, e.g. to load a provisioned bundle's).

        On a running broker the files are rewritten and Mosquitto reloads them (SIGHUP); this
        returns once the new account is accepted, so the caller can connect straight away.
        """
        topics.check_kiosk_id(kiosk_id)
        return self._add_account(kiosk_id, password)

    def add_kiosks(self, kiosk_ids):
        """Create many kiosk accounts with one rewrite and one reload (each :meth:`add_kiosk`
        reloads the broker, which a benchmark of tens of thousands cannot wait for); returns
        ``{kiosk_id: password}``."""
        passwords = {}
        for kiosk_id in kiosk_ids:
            topics.check_kiosk_id(kiosk_id)
            passwords[kiosk_id] = secrets.token_urlsafe(18)
        if passwords:
            self._accounts.update(passwords)
            self._reload(*next(reversed(passwords.items())))
        return passwords

    def add_multiplexer(self, name):
        """Create an account that publishes kiosk messages for any kiosk id and reads any
        kiosk's acks; its password. Only for a benchmark that carries the messages of kiosks
        past the connections one machine holds over a few connections: it breaks the rule
        that a kiosk writes only its own topics, so production has no such account."""
        topics.check_kiosk_id(name)
        self._multiplexers.add(name)
        return self._add_account(name)

    def add_collector(self, name):
        """Create another collector account (same rights as ``collector``, allowed into the
        collectors' share group) and return its password. The plugin reads the share accounts
        at start only, so a running broker is restarted (on the same ports; without
        persistence its sessions go): add collectors before the kiosks connect."""
        if not (name.startswith(f"{COLLECTOR}-") and is_reserved(name)
                and topics.check_kiosk_id(name.replace(COLLECTOR, "c", 1))):
            raise TelemetryError(f"collector account {name!r} must be {COLLECTOR}-<name>")
        if name not in self._collectors:
            self._collectors.append(name)
        password = secrets.token_urlsafe(18)
        self._accounts[name] = password
        self._write_auth()
        if self.is_running:
            self.restart()
        return password

    def add_observer(self, name):
        """Create an account that reads every topic and writes none of the fleet's; its password.

        For an auditor, or a test that must see every payload on the wire: logging in as the
        collector would take over the collector's session (the user name is the client id).
        """
        topics.check_kiosk_id(name)
        self._observers.add(name)
        return self._add_account(name)

    def _add_account(self, username, password=None):
        password = password or secrets.token_urlsafe(18)
        self._accounts[username] = password
        self._reload(username, password)
        return password

    def _reload(self, username, password):
        """Rewrite the files; on a running broker, reload them and wait until ``username``
        (the newest account) is accepted."""
        self._write_auth()
        if self.is_running:
            self._process.send_signal(signal.SIGHUP)
            self._wait_for_account(username, password)

    def _write_auth(self):
        for user, password in self._accounts.items():
            if self._hashes.get(user, (None,))[0] != password:
                self._hashes[user] = (password, password_hash(password))
        lines = [f"{user}:{self._hashes[user][1]}\n" for user in self._accounts]
        _write_private(self.passwd_file, "".join(lines))
        root = topics.ROOT
        acl = """\
# Generated by kiosk.rigs.broker. Patterns apply to every account; %u is the user name, which
# is also the client id (use_username_as_clientid), so a kiosk can only touch its own topics.
"""
        for name in self._collectors:
            # The update command too: a rollout past its rollback threshold is paused by the
            # collector, which withdraws its retained commands (docs/security.md).
            acl += (f"user {name}\ntopic read {root}/kiosk/#\ntopic write {root}/ack/#\n"
                    f"topic write {root}/cmd/+/update\n\n")
        acl += f"""\
user {OPS}
topic write {root}/cmd/#
topic read {root}/kiosk/+/status
topic read {root}/kiosk/+/pin
topic read {root}/kiosk/+/health
topic read {root}/kiosk/+/reply

# The signing service: kiosks' certificate requests in, their certificates out.
user {CA}
topic read {root}/kiosk/+/csr
topic write {root}/cmd/+/cert

pattern write {root}/kiosk/%u/+
pattern read {root}/cmd/%u/#
pattern read {root}/ack/%u/#
"""
        for name in sorted(self._observers):
            acl += f"\n# Observer: reads everything.\nuser {name}\ntopic read {root}/#\n"
        for name in sorted(self._multiplexers):
            acl += (f"\n# Benchmark multiplexer: many kiosks over one connection.\nuser {name}\n"
                    f"topic write {root}/kiosk/#\ntopic read {root}/ack/#\n")
        _write_private(self.workdir / "acl", acl)

    def _wait_for_account(self, username, password, timeout=10.0):
        """Retry a connect until Mosquitto has reloaded its files and accepts the account."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _is_accepted(self.port, username, password, deadline):
                return
            time.sleep(0.05)  # poll interval while Mosquitto reloads its files
        raise TelemetryError(f"broker did not accept the new account {username!r} in {timeout}s")

    # --- TLS ------------------------------------------------------------------------------

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], cwd=self.workdir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _make_ca(self):
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
                      "-subj", "/CN=CITIZENinfo test CA")
        self.ca_file = self.workdir / "ca.crt"
        (self.workdir / "server.ext").write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self._sign("server", "localhost", "server.ext")

    def _sign(self, name, common_name, extfile=None):
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", f"{name}.key", "-out", f"{name}.csr",
                      "-subj", f"/CN={common_name}")
        extra = ["-extfile", extfile] if extfile else []
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                      "-CAcreateserial", "-out", f"{name}.crt", "-days", "30", *extra)
        os.chmod(self.workdir / f"{name}.key", 0o600)
        return self.workdir / f"{name}.crt", self.workdir / f"{name}.key"

    def make_client_cert(self, kiosk_id):
        """``(cert_file, key_file)`` for ``kiosk_id``, signed by the test CA; the CN is the
        kiosk id, which the TLS listener takes as the user name."""
        if not self.is_tls:
            raise TelemetryError("this broker has no TLS listener; create it with tls=True")
        topics.check_kiosk_id(kiosk_id)
        return self._sign(f"client-{kiosk_id}", kiosk_id)

    # --- process --------------------------------------------------------------------------

    def _write_config(self):
        lines = [
            "# Generated by kiosk.rigs.broker for tests and the demo; see docs/broker.md.",
            # Run as root, Mosquitto would switch to the 'mosquitto' user, which cannot enter a
            # private (0700) temp directory. This broker only ever listens on 127.0.0.1 for a
            # test or demo, so it keeps the caller's user; the production unit does not.
            "user root" if os.geteuid() == 0 else "# not root: Mosquitto keeps this user",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {self.workdir / 'passwd'}",
            f"acl_file {self.workdir / 'acl'}",
            f"plugin {self.plugin}",
            f"plugin_opt_acl_file {self.workdir / 'acl'}",
            f"plugin_opt_share_accounts {' '.join(self._collectors)}",
            f"plugin_opt_revoked_file {self.revoked_file}",
            f"plugin_opt_revoked_retained {' '.join(REVOKED_RETAINED)}",
            f"max_packet_size {MAX_PACKET_BYTES}",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            f"max_inflight_messages {MAX_INFLIGHT_MESSAGES}",
            "persistent_client_expiration 2d",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "connection_messages true",
            f"persistence {'true' if self.is_persistent else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 60",
            "",
            f"listener {self.port} 127.0.0.1",
            "use_username_as_clientid true",
        ]
        if self.is_tls:
            lines += [
                "",
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.ca_file}",
                f"certfile {self.workdir / 'server.crt'}",
                f"keyfile {self.workdir / 'server.key'}",
                "require_certificate true",
                "use_identity_as_username true",
                "use_username_as_clientid true",
                *([f"crlfile {self.crl_file}"] if self.crl_file else []),
                "",
                f"listener {self.password_tls_port} 127.0.0.1",
                f"certfile {self.workdir / 'server.crt'}",
                f"keyfile {self.workdir / 'server.key'}",
                "use_username_as_clientid true",
            ]
        _write_private(self.workdir / "mosquitto.conf", "\n".join(lines) + "\n")

    @property
    def is_running(self):
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self):
        """Mosquitto's process id while it runs (a benchmark reads its CPU and memory)."""
        return self._process.pid if self.is_running else None

    def start(self, timeout=10.0):
        """Write the files, start Mosquitto and return once every listener accepts."""
        if self.is_running:
            return
        if not self.plugin.is_file():
            raise TelemetryError(f"the broker's auth plugin {self.plugin} is missing; run "
                                 "./dev setup to build it (needs gcc and mosquitto-dev)")
        self._write_auth()
        self._write_config()
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.workdir / "mosquitto.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        ports = [p for p in (self.port, self.tls_port, self.password_tls_port) if p]
        while not all(is_listening(p) for p in ports):
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace").strip()
                raise TelemetryError(f"mosquitto exited with {self._process.returncode}: "
                                     f"{err or 'see ' + str(self.log_path)}")
            if time.monotonic() > deadline:
                self.kill()
                raise TelemetryError(f"mosquitto did not listen on {ports} within {timeout}s")
            time.sleep(0.02)  # poll interval while the listener binds
        log.info("mosquitto listening on 127.0.0.1:%s%s", self.port,
                 f" (mTLS {self.tls_port})" if self.tls_port else "")

    def stop(self, timeout=10.0):
        """Clean shutdown (SIGTERM): persistence, if on, is written."""
        self._end(signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL, as a power cut would: whatever was not yet saved is gone."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig, timeout):
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
            if sig != signal.SIGKILL:
                self._wake()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stderr.close()
        self._process = None

    def _wake(self):
        """Open and close a connection, so Mosquitto acts on a signal at once: it blocks signals
        while it waits for network events, up to 100 ms, which once any client has connected
        it spends in full (a tenth of a second on every test's teardown)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            pass  # not listening (yet, or any more): nothing to wake

    def reload(self, timeout=10.0):
        """SIGHUP, as ``kiosk-fleet revoke`` and ``crl refresh`` send: Mosquitto reads its
        password, ACL, CRL and (through the plugin) revoked files again. Returns once its log
        says it reloaded; the plugin's work (kicks, retained deletions) follows in that same
        pass of its loop."""
        if not self.is_running:
            raise TelemetryError("the broker is not running; start() it before reload()")
        before = self._reloads()
        self._process.send_signal(signal.SIGHUP)
        self._wake()
        deadline = time.monotonic() + timeout
        while self._reloads() == before:
            if time.monotonic() > deadline:
                raise TelemetryError(f"mosquitto did not reload within {timeout}s; see "
                                     f"{self.log_path}")
            time.sleep(0.02)  # poll interval while Mosquitto reloads

    def _reloads(self):
        try:
            return self.log_path.read_text(errors="replace").count("Reloading config")
        except FileNotFoundError:
            return 0

    def restart(self, timeout=10.0):
        """Stop and start again on the same ports."""
        self.stop()
        self.start(timeout)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def _is_accepted(port, username, password, deadline):
    """Whether one MQTT 5 connect with these credentials gets a successful CONNACK."""
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    answered = threading.Event()
    result = []

    def on_connect(client, userdata, flags, reason_code, properties):
        result.append(not reason_code.is_failure)
        answered.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, keepalive=5)
    except OSError:
        return False
    client.loop_start()
    try:
        answered.wait(max(0.0, deadline - time.monotonic()))
        return bool(result and result[0])
    finally:
        client.disconnect()
        client.loop_stop()


def _write_private(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)
