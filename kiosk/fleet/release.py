"""``kiosk-fleet release``: the agency's signing key, and signed releases of the kiosk.

``keygen`` makes the key pair (the public half goes into the image, the private half never does);
``build`` turns a wheelhouse into a signed release folder; ``verify`` checks one exactly as a
kiosk will (:func:`kiosk.update.release.verify`). The format is in :mod:`kiosk.update.release`.
"""

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kiosk.errors import ReleaseError
from kiosk.store import MIGRATIONS
from kiosk.update import release

PRIVATE, PUBLIC = "release-key.pem", "release-key.pub"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    keygen = sub.add_parser("keygen", help="make the agency's release signing key pair")
    keygen.add_argument("--out", required=True, metavar="DIR",
                        help=f"folder for {PRIVATE} (secret, mode 0600) and {PUBLIC}")
    build = sub.add_parser("build", help="a signed release folder from a wheelhouse")
    build.add_argument("--key", required=True, metavar="FILE", help=f"the private key ({PRIVATE})")
    build.add_argument("--out", required=True, metavar="DIR", help="the release folder (new)")
    build.add_argument("--wheelhouse", metavar="DIR",
                       help="ready wheels for the kiosk's platform, the project's among them "
                       "(provisioning/image/wheelhouse makes the Pi's); default: build them "
                       "for this machine from --source")
    build.add_argument("--source", default=".", metavar="DIR",
                       help="the repository to build from (default: the current folder)")
    build.add_argument("--platform", default=release.platform_tag(),
                       help="the kiosk platform the wheels are for (default %(default)s)")
    verify = sub.add_parser("verify", help="check a release folder as a kiosk will")
    verify.add_argument("folder", metavar="DIR")
    verify.add_argument("--key", required=True, metavar="FILE", help=f"the public key ({PUBLIC})")
    verify.add_argument("--sha256", metavar="HEX", help="the manifest SHA-256 an update names")


def main(args):
    return {"keygen": keygen, "build": build, "verify": verify}[args.action](args)


def keygen(args):
    out = Path(args.out)
    private, public = out / PRIVATE, out / PUBLIC
    if private.exists() or public.exists():
        raise ReleaseError(f"{out} already holds a release key: move it away first (kiosks "
                           "flashed with its public key trust only it)")
    out.mkdir(parents=True, exist_ok=True)
    private_pem, public_pem = release.generate_key()
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public.write_bytes(public_pem)
    print(f"key {release.key_id(public_pem)}: {private} (keep it offline, never in an image), "
          f"{public} (goes into the image)")
    return 0


def build(args):
    out = Path(args.out)
    if out.exists():
        raise ReleaseError(f"{out} exists: a release folder is written once, never over")
    private_pem = _read(args.key, "the private key")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside the release folder: the final rename stays on one file system.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".staging-") as tmp:
        staged = Path(tmp) / "release"
        wheels = staged / release.WHEELS
        wheels.mkdir(parents=True)
        if args.wheelhouse:
            found = sorted(Path(args.wheelhouse).glob("*.whl"))
            if not found:
                raise ReleaseError(f"{args.wheelhouse}: no wheels in it")
            for wheel in found:
                shutil.copy2(wheel, wheels / wheel.name)
        else:
            _build_wheels(Path(args.source), wheels)
        manifest = release.describe(
            staged, version=_project_version(wheels), platform=args.platform,
            schema=len(MIGRATIONS), min_schema=0,
            created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        digest = release.sign_into(staged, manifest, private_pem)
        staged.rename(out)
    size = sum(f.size for f in manifest.files)
    print(f"release {manifest.version} for {manifest.platform}: {len(manifest.files)} wheels, "
          f"{size / 1e6:.1f} MB, in {out}; manifest sha256 {digest}")
    return 0


def verify(args):
    manifest = release.verify(args.folder, _read(args.key, "the public key"),
                              manifest_sha256=args.sha256)
    digest = release.sha256_of(Path(args.folder) / release.MANIFEST)
    print(f"release {manifest.version} for {manifest.platform}: {len(manifest.files)} wheels, "
          f"store schema {manifest.min_schema} to {manifest.schema}; signature and every hash "
          f"good; manifest sha256 {digest}")
    return 0


def _read(path, what):
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read {what} {path}: {exc.strerror}") from None


def _build_wheels(source, wheels):
    """The project and its kiosk dependencies as wheels for this machine (pip's own cache)."""
    if not (source / "setup.cfg").is_file():
        raise ReleaseError(f"{source} is not the kiosk's repository (no setup.cfg); give "
                           "--source or --wheelhouse")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir",
                           str(wheels), f"{source.resolve()}[kiosk]"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"pip wheel failed: {done.stderr.strip()[-600:]}")


def _project_version(wheels):
    prefix = release.NAME.replace("-", "_") + "-"
    found = [w.name for w in wheels.glob(prefix + "*.whl")]
    if len(found) != 1:
        raise ReleaseError(f"the wheelhouse must hold exactly one {release.NAME} wheel, "
                           f"not {len(found)}")
    return found[0][len(prefix):].split("-", 1)[0]
