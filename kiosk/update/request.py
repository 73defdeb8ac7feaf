"""The hand-off between the kiosk and its root updater: the request file and the status file.

The kiosk user cannot write the slots (root's, under ``/opt/kiosk``), so for an ``update``
command it only writes the release it wants into its own state folder (:data:`REQUEST`); the
updater's path unit (``systemd/kiosk-updater.path``) runs ``kiosk update --request`` on it as
root. That file was written by the kiosk user, so root reads it as untrusted
(:func:`read_request`): never through a symlink, only a regular file of at most
:data:`MAX_REQUEST_BYTES`, every field checked by the contract's own rules, and a version the
updater compares with the running one (:func:`is_newer`: a kiosk that could ask for an older
signed release could bring back a hole that release had fixed).

The updater says where it stands in :data:`STATUS` beside the slots (root's, world-readable);
the kiosk reads it for each health report (:func:`read_status`), tolerating anything: a bad
file is no update state.
"""

import json
import logging
import os
import re
from pathlib import Path

from kiosk import atomic, logsafe
from kiosk.errors import ReleaseError
from kiosk.telemetry import topics
from kiosk.update import trial

log = logging.getLogger(__name__)

REQUEST = "update-request.json"
STATUS = "update-status.json"
#: Where the kiosk finds the updater's status: beside the slots, on their own partition.
STATUS_PATH = "/opt/kiosk/update-status.json"
MAX_REQUEST_BYTES = 4096
MAX_STATUS_BYTES = 4096
#: The contract's limit on a text in ``health`` (``topics``): a reason is cut to it.
MAX_REASON_CHARS = 200
_FIELDS = ("version", "url", "sha256", "rollout")
#: Versions the updater can order: PEP 440's release, pre-release, post and dev parts. A
#: version it cannot order is refused, never guessed at.
_ORDERABLE = re.compile(r"(\d{1,9}(?:\.\d{1,9}){0,5})(?:(a|b|rc)(\d{1,9}))?"
                        r"(?:\.post(\d{1,9}))?(?:\.dev(\d{1,9}))?")


def request_content(release):
    """What the kiosk writes for a :class:`~kiosk.telemetry.topics.WantedRelease`."""
    return {"version": release.version, "url": release.url, "sha256": release.sha256,
            "rollout": release.rollout}


def request_text(release):
    return None if release is None else json.dumps(request_content(release)) + "\n"


def read_request(path):
    """The :class:`~kiosk.telemetry.topics.WantedRelease` the kiosk asked for in ``path``, or
    None when there is no request. Root runs this on a file the kiosk user wrote: ReleaseError
    for a symlink, anything but a regular file, a file over the size limit, and any field the
    contract would refuse on the wire (``https://`` URL, 64-hex SHA-256, version, rollout id)."""
    data = atomic.read_limited(path, MAX_REQUEST_BYTES, "the update request", ReleaseError)
    if data is None:
        return None
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError:
        raise ReleaseError("the update request is not UTF-8 JSON") from None
    if not isinstance(obj, dict) or set(obj) - set(_FIELDS) or set(_FIELDS[:3]) - set(obj):
        raise ReleaseError(f"the update request must hold {', '.join(_FIELDS)} and nothing else")
    sha256 = obj["sha256"]
    if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)):
        raise ReleaseError("the update request's sha256 must be 64 lowercase hex digits")
    fields = {"version": obj["version"], "url": obj["url"],
              "sha256": topics.grouped_sha256(sha256)}
    if obj.get("rollout") is not None:
        fields["rollout"] = obj["rollout"]
    try:  # the contract's own rules for an update command
        topics.command_payload("update", None, **fields)
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"the update request is refused: {_short(str(exc))}") from None
    return topics.WantedRelease(obj["version"], obj["url"], sha256, obj.get("rollout"))


def read_own_request(path):
    """The request the kiosk has on file, as :func:`request_content` wrote it; None when there
    is none or it cannot be read (the kiosk then writes it afresh)."""
    try:
        data = atomic.read_limited(path, MAX_REQUEST_BYTES, "the update request", ReleaseError)
        return None if data is None else json.loads(data.decode("utf-8"))
    except (ReleaseError, ValueError):
        return None


# --- versions -------------------------------------------------------------------------------


def version_key(version):
    """A sort key for ``version`` (PEP 440 ordering of the parts :data:`_ORDERABLE` allows);
    ValueError for a version this cannot order."""
    found = _ORDERABLE.fullmatch(version) if isinstance(version, str) else None
    if not found:
        raise ValueError(f"{version!r} is not a version the updater can order (like 1.2.0, "
                         "1.2.0rc1, 1.2.0.post1)")
    release, pre, pre_n, post, dev = found.groups()
    numbers = [int(part) for part in release.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()  # 1.2 == 1.2.0
    # A dev release of the version comes first, then its pre-releases, then the release.
    if pre:
        pre_key = (1, ("a", "b", "rc").index(pre), int(pre_n))
    else:
        pre_key = (0,) if dev and post is None else (2,)
    post_key = -1 if post is None else int(post)
    dev_key = float("inf") if dev is None else int(dev)
    return tuple(numbers), pre_key, post_key, dev_key


def is_newer(wanted, running):
    """Whether ``wanted`` is a later version than ``running``; ValueError if either cannot be
    ordered."""
    return version_key(wanted) > version_key(running)


def check_release(manifest, wanted, running):
    """ReleaseError unless the signed ``manifest`` is the very version the request named
    (``wanted``) and newer than the ``running`` one. The request's own version is only the
    kiosk's claim: a request saying 99.0 beside the URL and hash of an old signed release must
    not install that release. Run on the verified manifest, before any wheel is fetched or
    installed; None for either skips that half (a technician's update by hand)."""
    if wanted is not None and manifest.version != wanted:
        raise ReleaseError(f"version mismatch: the request names {wanted}, but the signed "
                           f"release is {manifest.version}; refused")
    if running is None:
        return
    try:
        newer = is_newer(manifest.version, running)
    except ValueError as exc:
        raise ReleaseError(f"downgrade check: {exc}") from None
    if not newer:
        raise ReleaseError(f"downgrade refused: the signed release {manifest.version} is not "
                           f"newer than the running {running}")


# --- the updater's status -------------------------------------------------------------------


def write_status(apps, state, version, *, reason=None, rollout=None, sha256=None):
    """Root's report of where the update stands (one of ``topics.UPDATE_STATES``), whole or not
    at all, world-readable. ``sha256`` names the release, so the same request is not tried
    again once refused or rolled back."""
    if state not in topics.UPDATE_STATES:
        raise ValueError(f"update state {state!r} is not one of {topics.UPDATE_STATES}")
    trial.write(Path(apps) / STATUS, {
        "state": state, "version": version,
        "reason": None if reason is None else _short(reason), "rollout": rollout,
        "sha256": sha256})
    os.chmod(Path(apps) / STATUS, 0o644)


def read_status_file(path):
    """The status as root wrote it (a dict), or None when missing or unreadable."""
    try:
        data = atomic.read_limited(path, MAX_STATUS_BYTES, "the update status", ReleaseError)
        obj = None if data is None else json.loads(data.decode("utf-8"))
    except (ReleaseError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


class StatusReader:
    """The kiosk's view of the updater's status, for ``health``: an
    :class:`~kiosk.telemetry.topics.UpdateState`, or None when there is no status file or it is
    not one (logged once per kind of fault, not once a minute)."""

    def __init__(self, path=STATUS_PATH):
        self.path = Path(path)
        self._said = set()

    def __call__(self):
        try:
            data = atomic.read_limited(self.path, MAX_STATUS_BYTES, "the update status",
                                          ReleaseError)
            if data is None:
                return None
            obj = json.loads(data.decode("utf-8"))
            if not isinstance(obj, dict) or obj.get("state") not in topics.UPDATE_STATES:
                raise ValueError("no update state in it")
            texts = [obj.get(key) for key in ("version", "reason", "rollout")]
            if not all(text is None or isinstance(text, str) for text in texts):
                raise ValueError("a field that is not text")
            version, reason, rollout = texts
            return topics.UpdateState(obj["state"], version, _short(reason) or None, rollout)
        except (ReleaseError, ValueError) as exc:
            fault = type(exc).__name__ + str(exc)[:40]
            if fault not in self._said:
                self._said.add(fault)
                log.warning("ignoring the update status %s: %s", self.path,
                            logsafe.printable(logsafe.redact_ids(str(exc))))
            return None


def _short(text):
    """A reason as the contract carries it: printable, no ID-shaped number, at most
    :data:`MAX_REASON_CHARS` characters."""
    if text is None:
        return None
    return logsafe.printable(logsafe.redact_ids(text), MAX_REASON_CHARS - 20)[:MAX_REASON_CHARS]
