"""The console's vendored scripts and stylesheets: which npm packages, at which versions, with
which integrity, and which of their files the console serves (from ``static/vendor/``).

Nothing comes from a CDN at run time (issue 13). ``./dev`` runs ``python -m
kiosk.fleet.console.assets``: ``npm pack`` fetches each package's tarball at its pinned
version, its sha512 must equal :data:`PACKAGES`' (the registry's ``dist.integrity``), and only
the listed files are unpacked, each checked against its own pinned sha512, which the pages also
give the browser as the tag's ``integrity`` (subresource integrity). A file that differs is
never written, and a run with everything in place does nothing.

The charts are inline SVG drawn by the server (:mod:`kiosk.fleet.console.charts`), not a
chart library: they show without JavaScript, and hidden counts are left out where the figures
are.
"""

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    integrity: str  # of the npm tarball, as the registry gives it
    files: dict  # path in the tarball -> (path under vendor/, integrity of the file)


PACKAGES = (
    Package("leaflet", "1.9.4",
            "sha512-nxS1ynzJOmOlHp+iL3FyWqK89GtNL8U8rvlMOsQdTTssxZwCXh8N2NB3GDQOL+YR3XnWyZA"
            "xwQixURb+FA74PA==", {
                "package/dist/leaflet.js": (
                    "leaflet/leaflet.js",
                    "sha512-BwHfrr4c9kmRkLw6iXFdzcdWV/PGkVgiIyIWLLlTSXzWQzxuSg4DiQUCpauz/EWj"
                    "gk5TYQqX/kvn9pG1NpYfqg=="),
                "package/dist/leaflet.css": (
                    "leaflet/leaflet.css",
                    "sha512-Zcn6bjR/8RZbLEpLIeOwNtzREBAJnUKESxces60Mpoj+2okopSAcSUIUOseddDm0"
                    "cxnGQzxIR7vJgsLZbdLE3w=="),
                # What leaflet.css names, so the stylesheet never asks for a missing file.
                "package/dist/images/layers.png": (
                    "leaflet/images/layers.png",
                    "sha512-fiNQ+p+Hucnpme6aZE4p8sasWTEKZ+NHfMYFFB6iAKLnBchibbVjonNfzQ1oDvrU"
                    "rHyUhMZ21mX2mXerZ75SlA=="),
                "package/dist/images/layers-2x.png": (
                    "leaflet/images/layers-2x.png",
                    "sha512-hNAodifp1Ry/svijkD1I40XLbWRVgcmPlAHS1flHXTRfJfiB0vYr0CvmvTj5+fsD"
                    "aZoFdJLj9ebqc0p8ivo3YQ=="),
                "package/dist/images/marker-icon.png": (
                    "leaflet/images/marker-icon.png",
                    "sha512-yPlkcjmYXJ64J3Qezl0UOLFOcb0tv2CGxrh/VS4DLkMYVxTNS3NqmlN0arcwqIFT"
                    "3DQhf1hNX9J3mDhVJSgGXg=="),
            }),
    Package("leaflet.markercluster", "1.5.3",
            "sha512-vPTw/Bndq7eQHjLBVlWpnGeLa3t+3zGiuM7fJwCkiMFq+nmRuG3RI3f7f4N4TDX7T4NpbAX"
            "pR2+NTRSEGfCSeA==", {
                "package/dist/leaflet.markercluster.js": (
                    "markercluster/leaflet.markercluster.js",
                    "sha512-OFs3W4DIZ5ZkrDhBFtsCP6JXtMEDGmhl0QPlmWYBJay40TT1n3gt2Xuw8Pf/iezg"
                    "W9CdabjkNChRqozl/YADmg=="),
                "package/dist/MarkerCluster.css": (
                    "markercluster/MarkerCluster.css",
                    "sha512-mQ77VzAakzdpWdgfL/lM1ksNy89uFgibRQANsNneSTMD/bj0Y/8+94XMwYhnbzx8"
                    "eki2hrbPpDm0vD0CiT2lcg=="),
                "package/dist/MarkerCluster.Default.css": (
                    "markercluster/MarkerCluster.Default.css",
                    "sha512-6ZCLMiYwTeli2rVh3XAPxy3YoR5fVxGdH/pz+KMCzRY2M65Emgkw00Yqmhh8qLGe"
                    "YQ3LbVZGdmOX9KUjSKr0TA=="),
            }),
)


def integrity(data):
    """The subresource-integrity text of ``data`` (as npm and browsers write sha512)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def pinned():
    """``{path under vendor/: integrity}`` of every served file."""
    return {served: sri for package in PACKAGES for served, sri in package.files.values()}


def missing(vendor=VENDOR):
    """The served files absent from ``vendor`` or not as pinned."""
    return [path for path, sri in pinned().items()
            if not (vendor / path).is_file() or integrity((vendor / path).read_bytes()) != sri]


def unpack(package, tarball, vendor=VENDOR):
    """Write ``package``'s files from the ``tarball`` bytes into ``vendor``, after checking
    the tarball's and each file's integrity (ValueError names what differs)."""
    if integrity(tarball) != package.integrity:
        raise ValueError(f"{package.name}@{package.version}: the tarball's integrity is not "
                         f"the pinned one")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member, (served, sri) in package.files.items():
            data = archive.extractfile(member).read()
            if integrity(data) != sri:
                raise ValueError(f"{package.name}@{package.version}: {member} is not as pinned")
            target = vendor / served
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def fetch(vendor=VENDOR, npm="npm"):
    """Fetch (``npm pack``) and unpack every package with a missing or altered file."""
    wanted = set(missing(vendor))
    for package in PACKAGES:
        if not wanted & {served for served, _ in package.files.values()}:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([npm, "pack", "--silent", f"{package.name}@{package.version}",
                            "--pack-destination", tmp], check=True, stdout=subprocess.DEVNULL)
            (tarball,) = Path(tmp).glob("*.tgz")
            unpack(package, tarball.read_bytes(), vendor)
        print(f"console assets: {package.name}@{package.version} into {vendor}")


if __name__ == "__main__":
    try:
        fetch()
    except (ValueError, subprocess.CalledProcessError, OSError) as exc:
        sys.exit(f"console assets: {exc}")
