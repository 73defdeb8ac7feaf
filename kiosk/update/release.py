"""A release of the kiosk application: its wheels, a manifest, and an Ed25519 signature.

A release is a folder (what ``kiosk-fleet release build`` writes and a kiosk downloads)::

    manifest.json   version, platform, store schema range, every file with its size and SHA-256
    manifest.sig    the key's id and the Ed25519 signature of manifest.json's exact bytes
    wheels/*.whl    the project and every dependency, for the kiosk's platform

:func:`verify` is the only way a kiosk trusts one. It checks the signature over the manifest's
bytes before parsing them, then every file's size and hash, and refuses any file the manifest
does not list; it only reads bytes, so nothing of a refused release has run.
"""

import base64
import hashlib
import json
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk.errors import ReleaseError

FORMAT = 1
NAME = "citizeninfo-kiosk"
MANIFEST, SIGNATURE, WHEELS = "manifest.json", "manifest.sig", "wheels"
#: Read at most this much of a manifest or signature before it is verified (a hostile server
#: must not make the kiosk read gigabytes into memory).
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 4096
MAX_FILES = 1000
MAX_FILE_BYTES = 2 << 30

_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!-]{0,63}")
_PLATFORM = re.compile(r"[a-z0-9_.-]{1,64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_WHEEL = re.compile(r"[A-Za-z0-9_.+!-]+\.whl")


class Transient(ReleaseError):
    """An update that could not go on now for a reason that says nothing about the release: the
    link or the server failed, the disk is short, the kiosk was never free, the request was
    withdrawn. The updater does not record the request as handled, so the same request is
    tried again at its next run (the next change of the request, or the next boot). Every
    other ReleaseError is the release's verdict, final for that request."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, POSIX, under wheels/
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a release holds. ``schema`` is the store schema it migrates to; ``min_schema`` the
    oldest it can migrate from (0: an empty store)."""

    version: str
    platform: str
    schema: int
    min_schema: int
    created: str
    files: tuple

    def to_bytes(self):
        document = {"format": FORMAT, "name": NAME, "version": self.version,
                    "platform": self.platform, "schema": self.schema,
                    "min_schema": self.min_schema, "created": self.created,
                    "files": [{"path": f.path, "size": f.size, "sha256": f.sha256}
                              for f in self.files]}
        return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data):
        """Parse a manifest (only ever after its signature was verified); ReleaseError names
        the first rule it breaks."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ReleaseError(f"{MANIFEST}: not JSON ({exc})") from None
        keys = {"format", "name", "version", "platform", "schema", "min_schema", "created",
                "files"}
        if not isinstance(doc, dict) or set(doc) != keys:
            raise ReleaseError(f"{MANIFEST}: must hold exactly the keys {sorted(keys)}")
        if doc["format"] != FORMAT or doc["name"] != NAME:
            raise ReleaseError(f"{MANIFEST}: format {doc['format']!r} of {doc['name']!r}; this "
                               f"kiosk reads format {FORMAT} of {NAME!r}")
        _check(doc["version"], _VERSION, "version")
        _check(doc["platform"], _PLATFORM, "platform")
        _check(doc["created"], _RFC3339, "created (RFC 3339 UTC, to the second)")
        schema, min_schema = doc["schema"], doc["min_schema"]
        if not (_is_int(schema) and _is_int(min_schema) and 0 <= min_schema <= schema):
            raise ReleaseError(f"{MANIFEST}: schema {schema!r} and min_schema {min_schema!r} "
                               "must be whole numbers with 0 <= min_schema <= schema")
        files = doc["files"]
        if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
            raise ReleaseError(f"{MANIFEST}: files must list 1 to {MAX_FILES} files")
        entries = tuple(_entry(item) for item in files)
        paths = [e.path for e in entries]
        if len(set(paths)) != len(paths):
            raise ReleaseError(f"{MANIFEST}: a file is listed twice")
        project = f"{WHEELS}/{NAME.replace('-', '_')}-{doc['version']}-"
        if not any(p.startswith(project) for p in paths):
            raise ReleaseError(f"{MANIFEST}: no wheel of {NAME} {doc['version']} in it")
        return cls(doc["version"], doc["platform"], schema, min_schema, doc["created"], entries)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check(value, pattern, what):
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ReleaseError(f"{MANIFEST}: {what} {value!r} is not allowed")


def _entry(item):
    if not isinstance(item, dict) or set(item) != {"path", "size", "sha256"}:
        raise ReleaseError(f"{MANIFEST}: each file needs exactly path, size and sha256")
    path, size, digest = item["path"], item["size"], item["sha256"]
    parts = PurePosixPath(path).parts if isinstance(path, str) else ()
    if (len(parts) != 2 or parts[0] != WHEELS or not _WHEEL.fullmatch(parts[1])
            or str(PurePosixPath(*parts)) != path):
        raise ReleaseError(f"{MANIFEST}: file path {path!r} must be {WHEELS}/<name>.whl")
    if not (_is_int(size) and 0 <= size <= MAX_FILE_BYTES):
        raise ReleaseError(f"{MANIFEST}: {path}: size {size!r} is not allowed")
    _check(digest, _SHA256, f"{path}: sha256")
    return FileEntry(path, size, digest)


def platform_tag():
    """This machine's platform as a manifest names it (``linux_aarch64`` on a 64-bit Pi OS)."""
    return re.sub(r"[^a-z0-9_.]", "_", sysconfig.get_platform().lower())


def check_fits(manifest, store_schema):
    """Refuse a release this kiosk cannot run: built for another platform, or unable to open
    a store at ``store_schema`` (newer than it knows, or older than it migrates from)."""
    if manifest.platform not in ("any", platform_tag()):
        raise ReleaseError(f"release {manifest.version} is built for {manifest.platform}; "
                           f"this kiosk is {platform_tag()}")
    if store_schema > manifest.schema:
        raise ReleaseError(f"release {manifest.version} knows store schemas up to "
                           f"{manifest.schema}; this store is at {store_schema} (a newer "
                           "version's): it could not open it")
    if store_schema and store_schema < manifest.min_schema:
        raise ReleaseError(f"release {manifest.version} migrates stores from schema "
                           f"{manifest.min_schema} on; this store is at {store_schema}: "
                           "install an intermediate release first")


# --- keys -------------------------------------------------------------------------------------

def generate_key():
    """A new key pair as (private PEM, public PEM). The private key stays with the agency."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def key_id(public_pem):
    """A short, stable name of a public key (the first 16 hex digits of its SHA-256)."""
    raw = _public_key(public_pem).public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _public_key(pem):
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ReleaseError(f"the public key is not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError("the public key is not an Ed25519 key")
    return key


def _private_key(pem):
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"the signing key is not an unencrypted PEM private key ({exc})") \
            from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError("the signing key is not an Ed25519 key")
    return key


# --- building ---------------------------------------------------------------------------------

def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def describe(folder, *, version, platform, schema, min_schema, created):
    """The Manifest of the wheels in ``folder``/wheels (checked as a kiosk will check it)."""
    wheels = sorted((Path(folder) / WHEELS).glob("*.whl"))
    files = [{"path": f"{WHEELS}/{w.name}", "size": w.stat().st_size, "sha256": sha256_of(w)}
             for w in wheels]
    document = {"format": FORMAT, "name": NAME, "version": version, "platform": platform,
                "schema": schema, "min_schema": min_schema, "created": created, "files": files}
    return Manifest.from_bytes(json.dumps(document).encode())


def sign_into(folder, manifest, private_pem):
    """Write ``manifest.json`` and its ``manifest.sig`` into ``folder``; returns the manifest's
    SHA-256 (what an update command names)."""
    key = _private_key(private_pem)
    data = manifest.to_bytes()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    signature = {"format": FORMAT, "key_id": key_id(public),
                 "ed25519": base64.b64encode(key.sign(data)).decode()}
    folder = Path(folder)
    (folder / MANIFEST).write_bytes(data)
    (folder / SIGNATURE).write_text(json.dumps(signature, sort_keys=True) + "\n")
    return hashlib.sha256(data).hexdigest()


# --- verifying --------------------------------------------------------------------------------

def verify(folder, public_pem, *, manifest_sha256=None):
    """Check the release in ``folder`` against the trusted ``public_pem`` (and, from an update
    command, the manifest's expected SHA-256); return its Manifest or raise ReleaseError."""
    folder = Path(folder)
    manifest = verify_manifest(_read_small(folder / MANIFEST, MAX_MANIFEST_BYTES),
                               _read_small(folder / SIGNATURE, MAX_SIGNATURE_BYTES),
                               public_pem, manifest_sha256=manifest_sha256)
    listed = {f.path for f in manifest.files}
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
               if not p.is_dir() or p.is_symlink()} - {MANIFEST, SIGNATURE}
    if present - listed:
        raise ReleaseError(f"not in the manifest: {', '.join(sorted(present - listed))}")
    for entry in manifest.files:
        path = folder / entry.path
        if path.is_symlink() or not path.is_file():
            raise ReleaseError(f"{entry.path}: missing (or not a plain file)")
        if path.stat().st_size != entry.size:
            raise ReleaseError(f"{entry.path}: {path.stat().st_size} bytes, the manifest says "
                               f"{entry.size}")
        if sha256_of(path) != entry.sha256:
            raise ReleaseError(f"{entry.path}: its SHA-256 does not match the manifest")
    return manifest


def verify_manifest(data, signature_file, public_pem, *, manifest_sha256=None):
    """The Manifest in ``data`` once its hash (when named) and its signature are checked (the
    first half of :func:`verify`; a download checks this before fetching any wheel)."""
    trusted = _public_key(public_pem)
    if manifest_sha256 is not None and hashlib.sha256(data).hexdigest() != manifest_sha256:
        raise ReleaseError(f"{MANIFEST} has SHA-256 {hashlib.sha256(data).hexdigest()}; the "
                           f"update named {manifest_sha256}: not the release ops chose")
    signer, signature = _signature(signature_file)
    if signer != key_id(public_pem):
        raise ReleaseError(f"signed by key {signer}; this kiosk trusts only key "
                           f"{key_id(public_pem)}")
    try:
        trusted.verify(signature, data)
    except InvalidSignature:
        raise ReleaseError(f"{MANIFEST}: the signature does not match (changed after "
                           "signing)") from None
    return Manifest.from_bytes(data)


def _read_small(path, limit):
    if path.is_symlink() or not path.is_file():
        raise ReleaseError(f"{path.name}: missing (or not a plain file)")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ReleaseError(f"{path.name}: larger than {limit} bytes")
    return data


def _signature(data):
    try:
        doc = json.loads(data.decode("utf-8"))
        if set(doc) != {"format", "key_id", "ed25519"} or doc["format"] != FORMAT:
            raise ValueError("unexpected keys or format")
        signature = base64.b64decode(doc["ed25519"], validate=True)
        if len(signature) != 64 or not isinstance(doc["key_id"], str):
            raise ValueError("not an Ed25519 signature")
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise ReleaseError(f"{SIGNATURE}: unreadable ({exc})") from None
    return doc["key_id"], signature
