"""``kiosk firstboot``: apply the agency's kiosk.toml and MQTT credentials from the boot partition.

Why: an agency provisions a kiosk by copying its bundle (``kiosk-fleet provision``) onto the FAT
boot partition of a flashed card. On boot, ``kiosk-firstboot.service`` runs this verb, which

1. parses ``kiosk.toml`` as TOML data (never as shell) and validates it with the one schema,
   :func:`kiosk.config.parse`, and checks that every credential it names is there;
2. on any problem installs *nothing*: it logs every ``section.key: message``, writes them to
   ``<root>/var/lib/kiosk/firstboot-problems.txt`` (the out-of-order screen shows it) and next to
   the file on the boot partition (``kiosk.toml.problems.txt``, for whoever pulls the card), lights
   the fault LED if the file names one, and exits non-zero;
3. otherwise installs the config, the credentials and the NTP drop-in under ``<root>/etc/kiosk``
   — a link into the persistent data partition, so a read-only root loses nothing — each file
   written beside its target and renamed into place, and gives the kiosk user its state folder;
4. deletes the secrets from the boot partition (anyone can read FAT) and renames the file
   ``kiosk.toml.applied``, so the unit's ``ConditionPathExists`` stops it next boot.

Ownership on the data partition: everything root reads (``kiosk.toml``, the NTP drop-in, the
credentials) and every folder on the way to it belong to root and are not writable for the kiosk
user, so a compromised kiosk process cannot swap them, not even across a reboot. The kiosk user
owns only ``/var/lib/kiosk/state`` (0700): its database and WAL, the remote config layer and the
prompt cache. The credentials are root's alone (0700 folder, 0600 files): systemd reads them as
root (``LoadCredential=mqtt:...`` in kiosk.service hands ``/etc/kiosk/credentials/<name>`` to the
process as ``/run/credentials/kiosk.service/mqtt_<name>``); see :data:`CREDENTIALS`. The
certificate renewal's folders are root's too: ``/etc/kiosk/renewal`` (0700, the pending key) and
``/var/lib/kiosk/renewal`` (0755, the request and the install record the kiosk reads).
"""

import logging
import os
import tomllib
from pathlib import Path, PurePosixPath

from kiosk import atomic, gpio
from kiosk import config as kiosk_config
from kiosk.bundle import (
    BOOT_DIR,
    CONFIG_NAME,
    CREDENTIALS,
    CREDENTIALS_RUN_DIR,
    DATA_DIR,
    PROBLEMS_NAME,
    STATE_DIR,
    credential_path,
)
from kiosk.errors import ConfigError, ProvisionError

log = logging.getLogger(__name__)

APPLIED_SUFFIX = ".applied"
# The config keys that may name a credential, and the boot-partition file behind each.
CREDENTIAL_KEYS = {
    "mqtt.password_file": "mqtt-password",
    "mqtt.cert_file": "mqtt-client.crt",
    "mqtt.key_file": "mqtt-client.key",
    "mqtt.ca_file": "mqtt-ca.crt",
}
#: The CA of the agency's release server, when it is not one of the system's: installed as
#: /etc/kiosk/update-ca.crt for the root updater (docs/updates.md). Public, so root's and 0644.
UPDATE_CA = "update-ca.crt"


def add_arguments(parser):
    parser.add_argument("--boot", default=str(BOOT_DIR), metavar="DIR",
                        help="boot partition holding kiosk.toml (default /boot/firmware)")
    parser.add_argument("--root", default="/", metavar="DIR",
                        help="root of the system to install into (default /)")
    parser.add_argument("--user", default="kiosk", help="account that owns the state folder")


def main(args):
    boot, root = Path(args.boot), Path(args.root)
    if not (boot / CONFIG_NAME).exists():
        print(f"{boot / CONFIG_NAME}: nothing to apply")
        return 0
    try:
        installed = apply(boot, root, user=args.user)
    except ProvisionError as exc:
        for line in str(exc).splitlines():
            log.error("%s", line)
        return 1
    print(f"{boot / CONFIG_NAME}: applied to {installed}")
    return 0


def apply(boot, root, *, user="kiosk"):
    """Validate and install; returns the installed config path or raises ProvisionError.

    On ProvisionError nothing under ``<root>/etc/kiosk`` has changed and the boot partition
    still holds every file, so the agency can fix the file and reboot.
    """
    boot, root = Path(boot), Path(root)
    source = boot / CONFIG_NAME
    text, raw, problems = _read(source)
    if not problems:
        problems = _validate(text, raw, source, boot, root)
    if problems:
        _refuse(source, root, raw, problems)
    target = _install(boot, root, text, raw, user)
    for boot_name in (*CREDENTIALS, UPDATE_CA):
        (boot / boot_name).unlink(missing_ok=True)
    source.replace(source.with_name(CONFIG_NAME + APPLIED_SUFFIX))
    (source.with_name(CONFIG_NAME + ".problems.txt")).unlink(missing_ok=True)
    (root / "var/lib/kiosk" / PROBLEMS_NAME).unlink(missing_ok=True)
    return target


def _read(source):
    try:
        text = source.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return "", {}, [f"{source}: byte {exc.start} is not UTF-8; save the file as UTF-8"]
    except OSError as exc:
        return "", {}, [f"{source}: cannot read: {exc.strerror}"]
    try:
        return text, tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        return text, {}, [f"{source}: not valid TOML: {exc}"]


def _validate(text, raw, source, boot, root):
    """Every problem at once: the schema's, then the credentials the file names."""
    try:
        cfg = kiosk_config.parse(text, str(source))
    except ConfigError as exc:
        return list(exc.problems)
    problems = []
    data_dir = PurePosixPath(cfg.storage.data_dir)  # no '..' in it: the schema refuses that
    if data_dir != STATE_DIR and STATE_DIR not in data_dir.parents:
        problems.append(f"storage.data_dir: {cfg.storage.data_dir!r} is outside {STATE_DIR}, the "
                        "only folder the kiosk user may write; remove the key or name a folder "
                        "under it")
    installed = _config_dir(root) / "credentials"
    for key, boot_name in CREDENTIAL_KEYS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if not value.startswith(CREDENTIALS_RUN_DIR + "/"):
            continue
        if value != credential_path(boot_name):
            problems.append(f"{key}: {value!r} is not a credential the kiosk receives; use "
                            f"{credential_path(boot_name)!r} with {boot_name} on the boot "
                            "partition")
            continue
        shipped = boot / boot_name
        if not shipped.exists() and not (installed / CREDENTIALS[boot_name]).exists():
            problems.append(f"{key}: names {value!r} but {shipped} is missing; copy {boot_name} "
                            "from the kiosk's bundle onto the boot partition")
            continue
        if shipped.exists():
            problem = _check_credential(shipped)
            if problem:
                problems.append(f"{key}: {problem}")
    if (boot / UPDATE_CA).exists():
        problem = _check_credential(boot / UPDATE_CA)
        if problem:
            problems.append(f"{UPDATE_CA}: {problem}")
    return problems


def _check_credential(path):
    data = path.read_bytes()
    if not data.strip():
        return f"{path} is empty; copy it again from the kiosk's bundle"
    if path.name == "mqtt-password" and len(data.strip().splitlines()) != 1:
        return f"{path} must hold the password on one line"
    if path.name.endswith(".key") and b"PRIVATE KEY" not in data:
        return f"{path} is not a PEM private key; copy client.key from the kiosk's bundle"
    if path.name.endswith(".crt") and b"BEGIN CERTIFICATE" not in data:
        return f"{path} is not a PEM certificate; copy it from the kiosk's bundle"
    return None


def _refuse(source, root, raw, problems):
    message = (f"{source} was NOT applied ({len(problems)} problem(s)); fix them and reboot:\n"
               + "".join(f"  {p}\n" for p in problems))
    for path in (source.with_name(CONFIG_NAME + ".problems.txt"),
                 root / "var/lib/kiosk" / PROBLEMS_NAME):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(message, encoding="utf-8")
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc)
    gpio.show_fault_light(raw.get("gpio", {}) if isinstance(raw.get("gpio"), dict) else {})
    raise ProvisionError(message.rstrip())


def _config_dir(root):
    return root / "etc/kiosk"


def _owner(root, user):
    """(uid, gid) of ``user`` in the target root's /etc/passwd, or None where it does not exist."""
    try:
        lines = (root / "etc/passwd").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user:
            return int(fields[2]), int(fields[3])
    return None


def _folder(path, mode, owner):
    """Make ``path`` a real folder with ``owner`` and ``mode``.

    A link or file in its place is removed first: under the old layout the kiosk user owned the
    partition's top and could have left a link there to make root write (or chown) elsewhere.
    """
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)
    os.chown(path, *owner, follow_symlinks=False)
    os.chmod(path, mode)


def _install(boot, root, text, raw, user):
    owner = _owner(root, user)
    if owner is None:
        log.warning("user %r does not exist in %s: its state folder stays root's", user, root)
    # The partition's top first: once it is root's, nothing below can change under our feet.
    # Others may pass through to config/ (timesyncd reads its drop-in there) and state/.
    data = root / DATA_DIR.lstrip("/")
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, 0, 0)
    os.chmod(data, 0o755)
    config_dir = data / "config"  # where the image's /etc/kiosk link points
    _folder(config_dir, 0o755, (0, 0))
    credentials = config_dir / "credentials"
    _folder(credentials, 0o700, (0, 0))
    for installed in credentials.iterdir():  # also those an older layout gave the kiosk user
        os.chown(installed, 0, 0, follow_symlinks=False)
    # The certificate renewal's (kiosk cert, docs/credentials.md): root's pending key, private;
    # root's request and install record, which the kiosk reads and may not replace.
    _folder(config_dir / "renewal", 0o700, (0, 0))
    _folder(data / "renewal", 0o755, (0, 0))
    # A fresh ext4 partition has no folder the kiosk user may write: without this it could not
    # create its database and would crash until the start limit reboots the Pi.
    _folder(root / str(STATE_DIR).lstrip("/"), 0o700, owner or (0, 0))
    for boot_name, name in CREDENTIALS.items():
        if (boot / boot_name).exists():
            atomic.replace(credentials / name, (boot / boot_name).read_bytes(), 0o600)
    if (boot / UPDATE_CA).exists():
        atomic.replace(config_dir / UPDATE_CA, (boot / UPDATE_CA).read_bytes(), 0o644)
    servers = raw.get("time", {}).get("ntp_servers", [])
    timesyncd = "[Time]\n" + (f"NTP={' '.join(servers)}\n" if servers else
                              "# No agency NTP servers in kiosk.toml: the system's apply.\n")
    atomic.replace(config_dir / "timesyncd.conf",
           b"# Written by kiosk firstboot from time.ntp_servers.\n" + timesyncd.encode(), 0o644)
    target = _config_dir(root) / CONFIG_NAME
    atomic.replace(config_dir / CONFIG_NAME, text.encode("utf-8"), 0o644)
    os.sync()
    return target
