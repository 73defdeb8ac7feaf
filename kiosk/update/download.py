"""Fetch a release over HTTPS into a folder, resuming what a cut link left, checked all the way.

The manifest and its signature come first and are verified before any wheel is fetched
(:func:`kiosk.update.release.verify_manifest`), so a wrong or unsigned release costs the kiosk
two small files, never its 4G allowance. Then the disk must hold what is still missing, with
room to install it. Each wheel is fetched into ``<name>.part``, resumed with an HTTP range
request after a cut, and renamed into place only once its SHA-256 matches. The folder is finally
checked as a whole (:func:`~kiosk.update.release.verify`), ready for :mod:`kiosk.update.slots`.
"""

import http.client
import re
import shutil
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from kiosk.errors import ReleaseError
from kiosk.update import release, request

CHUNK = 64 * 1024
#: An install needs about the wheels' size again for the unpacked venv, plus the store's backup.
ROOM_FACTOR = 3
ATTEMPTS = 5


def fetch(url, into, public_pem, *, manifest_sha256, version=None, newer_than=None,
          cafile=None, timeout_s=30.0, attempts=ATTEMPTS, retry_s=2.0,
          on_progress=lambda done, total: None,
          free_bytes=lambda path: shutil.disk_usage(path).free, sleep=time.sleep):
    """Download the release at ``url`` (a folder URL, https) into ``into``; returns its
    Manifest once the whole folder verifies. ``version`` and ``newer_than`` (a request's) are
    checked on the signed manifest before any wheel is fetched
    (:func:`kiosk.update.request.check_release`). Raises ReleaseError naming what failed;
    :class:`~kiosk.update.release.Transient` when the link, the server or the disk failed
    (worth trying again), any other when the release itself is refused."""
    if not url.startswith("https://"):
        raise ReleaseError(f"release URL {url!r}: only https:// is allowed")
    if not re.fullmatch(r"[0-9a-f]{64}", manifest_sha256 or ""):
        raise ReleaseError(f"manifest SHA-256 {manifest_sha256!r} is not 64 hex digits")
    base, into = url.rstrip("/") + "/", Path(into)
    into.mkdir(parents=True, exist_ok=True)
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         _HttpsOnlyRedirects())

    def get(name, limit=None):
        return _fetch(base + name, into / name, opener, timeout_s, attempts, retry_s, sleep,
                      limit=limit)

    get(release.SIGNATURE, limit=release.MAX_SIGNATURE_BYTES)
    get(release.MANIFEST, limit=release.MAX_MANIFEST_BYTES)
    manifest = release.verify_manifest((into / release.MANIFEST).read_bytes(),
                                       (into / release.SIGNATURE).read_bytes(), public_pem,
                                       manifest_sha256=manifest_sha256)
    request.check_release(manifest, version, newer_than)
    missing = [f for f in manifest.files if not _is_complete(into / f.path, f)]
    needed = sum(f.size for f in manifest.files) * ROOM_FACTOR
    have = free_bytes(into)
    if missing and have < needed:
        raise release.Transient(f"release {manifest.version} needs {needed / 1e6:.0f} MB free to "
                           f"download and install; {have / 1e6:.0f} MB free under {into}")
    total = sum(f.size for f in manifest.files)
    done = total - sum(f.size for f in missing)
    on_progress(done, total)
    for entry in missing:
        target = into / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        get(entry.path, limit=entry.size)
        if target.stat().st_size != entry.size or release.sha256_of(target) != entry.sha256:
            target.unlink()
            raise ReleaseError(f"{entry.path}: downloaded, but its SHA-256 does not match the "
                               "signed manifest (the server or the link altered it)")
        done += entry.size
        on_progress(done, total)
    return release.verify(into, public_pem, manifest_sha256=manifest_sha256)


def _is_complete(path, entry):
    return path.is_file() and path.stat().st_size == entry.size and \
        release.sha256_of(path) == entry.sha256


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect may move the release, never off HTTPS."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith("https://"):
            raise release.Transient(f"{req.full_url}: redirected to {newurl!r}, which is not https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url, target, opener, timeout_s, attempts, retry_s, sleep, *, limit=None):
    """``url`` into ``target`` through ``target.part``, resuming a cut; at most ``limit``
    bytes are accepted."""
    partial = target.with_name(target.name + ".part")
    for attempt in range(1, attempts + 1):
        have = partial.stat().st_size if partial.exists() else 0
        try:
            _get(url, partial, have, opener, timeout_s, limit)
            partial.replace(target)
            return
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            if isinstance(exc, ReleaseError):
                raise
            if isinstance(exc, urllib.error.HTTPError) and exc.code == 416:
                partial.unlink(missing_ok=True)  # asked past its end: the part is whole or stale
            elif isinstance(exc, urllib.error.HTTPError) and exc.code not in (408, 429, 500,
                                                                              502, 503, 504):
                raise release.Transient(f"{url}: HTTP {exc.code} {exc.reason}") from None
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise release.Transient(f"{url}: the server's certificate is not trusted "
                                   f"({reason.verify_message})") from None
            if attempt == attempts:
                raise release.Transient(f"{url}: {exc} ({attempts} attempts)") from None
            sleep(retry_s * attempt)


def _get(url, partial, have, opener, timeout_s, limit):
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with opener.open(request, timeout=timeout_s) as response:
        # A 206 must continue exactly where the part ends; anything else starts over.
        resumed = bool(have) and response.status == 206 and (
            response.headers.get("Content-Range", "").startswith(f"bytes {have}-"))
        if have and response.status == 206 and not resumed:
            partial.unlink()  # not the part asked for: the next attempt starts over
            raise OSError(f"asked from byte {have}, got {response.headers.get('Content-Range')}")
        size = have if resumed else 0  # a plain 200 answer is the whole file: start over
        expected = int(response.headers.get("Content-Length", -1))  # ValueError: retried
        received = 0
        with open(partial, "ab" if resumed else "wb") as out:
            while chunk := response.read(CHUNK):
                received += len(chunk)
                if limit is not None and size + received > limit:
                    raise ReleaseError(f"{url}: larger than the {limit} bytes expected")
                out.write(chunk)
        if received < expected:
            raise OSError(f"the link was cut after {size + received} bytes")
