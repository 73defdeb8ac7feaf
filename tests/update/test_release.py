"""Signed releases: what ``kiosk-fleet release`` builds, and what a kiosk refuses before anything
of a release runs (kiosk.update.release.verify)."""

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import ReleaseError
from kiosk.update import release
from tests.fuzz.budget import budget

VERSION = "9.9.0"
PROJECT = f"wheels/citizeninfo_kiosk-{VERSION}-py3-none-any.whl"
DEPENDENCY = "wheels/paho_mqtt-2.1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def other_keys():
    return release.generate_key()


def wheelhouse(folder):
    (folder / "wheels").mkdir(parents=True)
    (folder / PROJECT).write_bytes(b"PK\x03\x04 the kiosk " * 100)
    (folder / DEPENDENCY).write_bytes(os.urandom(5000))
    return folder


def signed(folder, private_pem, **changes):
    fields = dict(version=VERSION, platform="linux_aarch64", schema=6, min_schema=0,
                  created="2026-12-02T09:00:00Z") | changes
    manifest = release.describe(folder, **fields)
    return release.sign_into(folder, manifest, private_pem)


@pytest.fixture
def built(tmp_path, release_keys):
    folder = wheelhouse(tmp_path / "release")
    digest = signed(folder, release_keys[0])
    return folder, digest


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def sign_raw(folder, document, private_pem, *, key_of=None):
    """Sign an arbitrary manifest document: what a holder of the key (or a forger) could."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem, password=None)
    data = json.dumps(document).encode()
    (folder / release.MANIFEST).write_bytes(data)
    (folder / release.SIGNATURE).write_text(json.dumps({
        "format": 1, "key_id": release.key_id(key_of) if key_of else "0" * 16,
        "ed25519": base64.b64encode(key.sign(data)).decode()}))


def test_release_signed_release_verifies_with_every_file(built, release_keys):
    folder, digest = built
    manifest = release.verify(folder, release_keys[1], manifest_sha256=digest)
    assert (manifest.version, manifest.platform, manifest.schema, manifest.min_schema) == (
        VERSION, "linux_aarch64", 6, 0)
    assert {(f.path, f.size) for f in manifest.files} == {(PROJECT, 1500), (DEPENDENCY, 5000)}
    assert digest == hashlib.sha256((folder / release.MANIFEST).read_bytes()).hexdigest()


@pytest.mark.parametrize("tamper, refusal", [
    (lambda f: flip(f / PROJECT, 700), "SHA-256 does not match"),
    (lambda f: flip(f / DEPENDENCY, 0), "SHA-256 does not match"),
    (lambda f: (f / PROJECT).write_bytes((f / PROJECT).read_bytes()[:-1]), "1499 bytes"),
    (lambda f: flip(f / release.MANIFEST, 40), "signature does not match"),
    (lambda f: (f / DEPENDENCY).unlink(), "missing"),
    (lambda f: (f / "wheels/evil-1.0-py3-none-any.whl").write_bytes(b"x"), "not in the manifest"),
    (lambda f: (f / "install.sh").write_text("rm -rf /"), "not in the manifest"),
    (lambda f: (f / release.SIGNATURE).write_text("{}"), "manifest.sig: unreadable"),
    (lambda f: (f / release.SIGNATURE).unlink(), "manifest.sig: missing"),
])
def test_release_tampered_release_is_refused(built, release_keys, tamper, refusal):
    folder, _ = built
    tamper(folder)
    with pytest.raises(ReleaseError, match=refusal):
        release.verify(folder, release_keys[1])


def test_release_swapped_for_a_symlink_is_refused(built, release_keys, tmp_path):
    folder, _ = built
    outside = tmp_path / "outside.whl"
    outside.write_bytes((folder / DEPENDENCY).read_bytes())  # the same bytes, elsewhere
    (folder / DEPENDENCY).unlink()
    (folder / DEPENDENCY).symlink_to(outside)
    with pytest.raises(ReleaseError, match="not a plain file"):
        release.verify(folder, release_keys[1])


def test_release_signed_by_another_key_is_refused_naming_both(tmp_path, release_keys, other_keys):
    folder = wheelhouse(tmp_path / "release")
    signed(folder, other_keys[0])
    with pytest.raises(ReleaseError) as refused:
        release.verify(folder, release_keys[1])
    assert (f"signed by key {release.key_id(other_keys[1])}; this kiosk trusts only key "
            f"{release.key_id(release_keys[1])}") in str(refused.value)


def test_release_forged_key_id_does_not_pass(tmp_path, release_keys, other_keys):
    """Claiming the trusted key's id does not help: the signature is still the other key's."""
    folder = wheelhouse(tmp_path / "release")
    manifest = release.describe(folder, version=VERSION, platform="linux_aarch64", schema=6,
                                min_schema=0, created="2026-12-02T09:00:00Z")
    sign_raw(folder, json.loads(manifest.to_bytes()), other_keys[0], key_of=release_keys[1])
    with pytest.raises(ReleaseError, match="signature does not match"):
        release.verify(folder, release_keys[1])


def test_release_other_manifest_than_the_update_named_is_refused(built, release_keys):
    folder, digest = built
    with pytest.raises(ReleaseError, match="not the release ops chose"):
        release.verify(folder, release_keys[1], manifest_sha256="0" * 64)
    assert release.verify(folder, release_keys[1], manifest_sha256=digest).version == VERSION


@pytest.mark.parametrize("path", ["wheels/../evil-1.0-py3-none-any.whl", "../evil.whl",
                                  "/etc/evil.whl", "wheels/sub/evil.whl", "evil.whl",
                                  "wheels/evil.sh", "wheels//x.whl", "wheels/./x.whl"])
def test_release_manifest_paths_stay_in_the_wheels_folder(tmp_path, release_keys, path):
    """Even a manifest signed with the trusted key cannot name a file outside wheels/."""
    folder = wheelhouse(tmp_path / "release")
    manifest = json.loads(release.describe(
        folder, version=VERSION, platform="linux_aarch64", schema=6, min_schema=0,
        created="2026-12-02T09:00:00Z").to_bytes())
    manifest["files"].append({"path": path, "size": 1, "sha256": "0" * 64})
    sign_raw(folder, manifest, release_keys[0], key_of=release_keys[1])
    with pytest.raises(ReleaseError, match="must be wheels/<name>.whl"):
        release.verify(folder, release_keys[1])


@pytest.mark.parametrize("change, refusal", [
    ({"schema": 2, "min_schema": 3}, "min_schema"),
    ({"schema": True}, "min_schema"),
    ({"version": "1.0; rm -rf /"}, "version"),
    ({"created": "yesterday"}, "created"),
    ({"format": 2}, "format 2"),
    ({"files": []}, "1 to 1000 files"),
    ({"extra": 1}, "exactly the keys"),
    ({"version": "9.9.1"}, "no wheel of citizeninfo-kiosk 9.9.1"),
])
def test_release_manifest_rules(tmp_path, release_keys, change, refusal):
    folder = wheelhouse(tmp_path / "release")
    manifest = json.loads(release.describe(
        folder, version=VERSION, platform="linux_aarch64", schema=6, min_schema=0,
        created="2026-12-02T09:00:00Z").to_bytes()) | change
    sign_raw(folder, manifest, release_keys[0], key_of=release_keys[1])
    with pytest.raises(ReleaseError, match=refusal):
        release.verify(folder, release_keys[1])


@budget(300)
@given(data=st.binary(max_size=600) | st.builds(
    lambda doc: json.dumps(doc).encode(),
    st.dictionaries(st.sampled_from(["format", "name", "version", "platform", "schema",
                                     "min_schema", "created", "files"]),
                    st.none() | st.booleans() | st.integers() | st.text(max_size=20)
                    | st.lists(st.dictionaries(st.sampled_from(["path", "size", "sha256"]),
                                               st.integers() | st.text(max_size=80)),
                               max_size=3))))
def test_release_manifest_parser_returns_or_refuses(data):
    """Any bytes signed with the trusted key: a Manifest or a ReleaseError, nothing else."""
    try:
        manifest = release.Manifest.from_bytes(data)
    except ReleaseError:
        return
    assert release.Manifest.from_bytes(manifest.to_bytes()) == manifest


def test_release_oversized_manifest_is_not_read_whole(built, release_keys):
    folder, _ = built
    (folder / release.MANIFEST).write_bytes(b" " * (release.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(ReleaseError, match="larger than"):
        release.verify(folder, release_keys[1])


def fleet(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "from kiosk.fleet.cli import main; main()",
                           "release", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def test_release_cli_keygen_build_verify(tmp_path):
    keys = tmp_path / "keys"
    made = fleet("keygen", "--out", keys)
    assert made.returncode == 0, made.stderr
    private, public = keys / "release-key.pem", keys / "release-key.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE" not in public.read_bytes()
    assert release.key_id(public.read_bytes()) in made.stdout
    again = fleet("keygen", "--out", keys)
    assert again.returncode == 1 and "already holds a release key" in again.stderr

    house = wheelhouse(tmp_path / "house") / "wheels"
    out = tmp_path / "releases" / VERSION
    done = fleet("build", "--key", private, "--wheelhouse", house, "--out", out,
                 "--platform", "linux_aarch64")
    assert done.returncode == 0, done.stderr
    digest = done.stdout.split("manifest sha256 ")[1].strip()
    assert digest == release.sha256_of(out / release.MANIFEST)
    assert fleet("build", "--key", private, "--wheelhouse", house, "--out", out).returncode == 1

    checked = fleet("verify", out, "--key", public, "--sha256", digest)
    assert checked.returncode == 0, checked.stderr
    assert f"release {VERSION} for linux_aarch64: 2 wheels" in checked.stdout
    flip(out / PROJECT, 3)
    refused = fleet("verify", out, "--key", public)
    assert refused.returncode == 1
    assert "SHA-256 does not match" in refused.stderr and "Traceback" not in refused.stderr


def test_release_cli_build_needs_exactly_one_project_wheel(tmp_path, release_keys):
    key = tmp_path / "release-key.pem"
    key.write_bytes(release_keys[0])
    house = wheelhouse(tmp_path / "house") / "wheels"
    (house / PROJECT.split("/")[1]).unlink()
    done = fleet("build", "--key", key, "--wheelhouse", house, "--out", tmp_path / "r")
    assert done.returncode == 1 and "exactly one citizeninfo-kiosk wheel, not 0" in done.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("platform, store_schema, refusal", [
    ("linux_s390x", 6, "built for linux_s390x; this kiosk is "),
    ("any", 8, "knows store schemas up to 7; this store is at 8"),
    ("any", 2, "migrates stores from schema 3 on; this store is at 2"),
])
def test_release_that_does_not_fit_this_kiosk_is_refused(tmp_path, platform, store_schema,
                                                          refusal):
    manifest = release.describe(wheelhouse(tmp_path / "r"), version=VERSION, platform=platform,
                                schema=7, min_schema=3, created="2026-12-02T09:00:00Z")
    with pytest.raises(ReleaseError, match=refusal):
        release.check_fits(manifest, store_schema)


@pytest.mark.parametrize("store_schema", [0, 3, 6, 7])  # 0: no store yet
def test_release_that_fits_passes(tmp_path, store_schema):
    manifest = release.describe(wheelhouse(tmp_path / "r"), version=VERSION,
                                platform=release.platform_tag(), schema=7, min_schema=3,
                                created="2026-12-02T09:00:00Z")
    release.check_fits(manifest, store_schema)
