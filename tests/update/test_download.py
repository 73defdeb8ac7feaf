"""Downloading a release over HTTPS (kiosk.update.download): verified before any wheel is fetched,
resumed after a cut link, refused when the disk is short or the server is not trusted."""

import os

import pytest

from kiosk.errors import ReleaseError
from kiosk.update import download, release
from tests.fixtures.release_server import ReleaseServer

VERSION = "9.9.0"
PROJECT = f"wheels/citizeninfo_kiosk-{VERSION}-py3-none-any.whl"
DEPENDENCY = "wheels/pygame_ce-2.5.8-cp311-cp311-manylinux_2_28_aarch64.whl"


@pytest.fixture
def published(tmp_path, release_keys, tls):
    """A signed release of two wheels (300 kB and 200 kB) on a local HTTPS server."""
    root = tmp_path / "published"
    (root / "wheels").mkdir(parents=True)
    (root / PROJECT).write_bytes(os.urandom(300_000))
    (root / DEPENDENCY).write_bytes(os.urandom(200_000))
    manifest = release.describe(root, version=VERSION, platform="linux_aarch64", schema=6,
                                min_schema=0, created="2026-12-02T09:00:00Z")
    digest = release.sign_into(root, manifest, release_keys[0])
    server = ReleaseServer(root, tls)
    yield server, digest
    server.httpd.shutdown()
    server.httpd.server_close()


def fetch(server, digest, into, release_keys, tls, **options):
    return download.fetch(server.url, into, release_keys[1], manifest_sha256=digest,
                          cafile=tls / "ca.crt", retry_s=0, **options)


def test_download_fetches_and_verifies_the_whole_release(published, release_keys, tls, tmp_path):
    server, digest = published
    progress = []
    manifest = fetch(server, digest, tmp_path / "dl", release_keys, tls,
                     on_progress=lambda done, total: progress.append((done, total)))
    assert manifest.version == VERSION
    assert release.verify(tmp_path / "dl", release_keys[1], manifest_sha256=digest) == manifest
    assert progress[0] == (0, 500_000) and progress[-1] == (500_000, 500_000)
    assert not list((tmp_path / "dl").rglob("*.part"))
    assert server.wheels_asked() == [PROJECT, DEPENDENCY]
    fetch(server, digest, tmp_path / "dl", release_keys, tls)  # again: the wheels are already here
    assert server.wheels_asked() == [PROJECT, DEPENDENCY]


def test_download_resumes_a_cut_link_where_it_stopped(published, release_keys, tls, tmp_path):
    server, digest = published
    server.cut[PROJECT] = 120_000
    fetch(server, digest, tmp_path / "dl", release_keys, tls)
    assert [r for r in server.requests if r[0] == PROJECT] == [
        (PROJECT, None), (PROJECT, "bytes=120000-")]
    assert release.sha256_of(tmp_path / "dl" / PROJECT) == \
        release.sha256_of(server.root / PROJECT)


@pytest.mark.parametrize("misbehaviour", ["ignores ranges", "names another range"])
def test_download_starts_over_when_the_server_does_not_resume(
        published, release_keys, tls, tmp_path, misbehaviour):
    server, digest = published
    server.ranges = misbehaviour != "ignores ranges"
    server.wrong_range = misbehaviour == "names another range"
    server.cut[DEPENDENCY] = 50_000
    assert fetch(server, digest, tmp_path / "dl", release_keys, tls).version == VERSION
    asked = [r for p, r in server.requests if p == DEPENDENCY]
    assert asked[:2] == [None, "bytes=50000-"]  # it did ask to resume
    assert release.sha256_of(tmp_path / "dl" / DEPENDENCY) == \
        release.sha256_of(server.root / DEPENDENCY)


def test_download_part_already_whole_is_finished_not_stuck(published, release_keys, tls, tmp_path):
    """Killed between the last byte and the rename: the server answers 416 to the resume."""
    server, digest = published
    (tmp_path / "dl/wheels").mkdir(parents=True)
    (tmp_path / "dl" / (PROJECT + ".part")).write_bytes((server.root / PROJECT).read_bytes())
    assert fetch(server, digest, tmp_path / "dl", release_keys, tls).version == VERSION


def test_download_refuses_a_redirect_off_https(published, release_keys, tls, tmp_path):
    server, digest = published
    server.redirect = "http://127.0.0.1:9/release/"
    with pytest.raises(ReleaseError, match="which is not https"):
        fetch(server, digest, tmp_path / "dl", release_keys, tls)
    with pytest.raises(ReleaseError, match="not 64 hex digits"):
        fetch(server, "../../etc", tmp_path / "dl", release_keys, tls)


def test_download_of_another_release_fetches_no_wheel(published, release_keys, tls, tmp_path):
    server, _ = published
    with pytest.raises(ReleaseError, match="not the release ops chose"):
        fetch(server, "0" * 64, tmp_path / "dl", release_keys, tls)
    assert server.wheels_asked() == []


def test_download_signed_by_another_key_fetches_no_wheel(published, tls, tmp_path):
    server, digest = published
    with pytest.raises(ReleaseError, match="this kiosk trusts only key"):
        download.fetch(server.url, tmp_path / "dl", release.generate_key()[1],
                       manifest_sha256=digest, cafile=tls / "ca.crt", retry_s=0)
    assert server.wheels_asked() == []


def test_download_refused_when_the_disk_is_short(published, release_keys, tls, tmp_path):
    server, digest = published
    with pytest.raises(ReleaseError, match=r"needs 2 MB free .* 1 MB free"):
        fetch(server, digest, tmp_path / "dl", release_keys, tls, free_bytes=lambda path: 1_000_000)
    assert server.wheels_asked() == []


def test_download_altered_wheel_is_not_kept(published, release_keys, tls, tmp_path):
    server, digest = published
    data = bytearray((server.root / DEPENDENCY).read_bytes())
    data[1000] ^= 0xFF  # the server (or a proxy) serves other bytes than were signed
    (server.root / DEPENDENCY).write_bytes(bytes(data))
    with pytest.raises(ReleaseError, match="does not match the signed manifest"):
        fetch(server, digest, tmp_path / "dl", release_keys, tls)
    assert not (tmp_path / "dl" / DEPENDENCY).exists()


def test_download_refuses_an_untrusted_server_and_plain_http(published, release_keys, tmp_path):
    server, digest = published
    with pytest.raises(ReleaseError, match="certificate is not trusted"):
        download.fetch(server.url, tmp_path / "dl", release_keys[1], manifest_sha256=digest,
                       retry_s=0)
    with pytest.raises(ReleaseError, match="only https:// is allowed"):
        download.fetch(server.url.replace("https", "http"), tmp_path / "dl", release_keys[1],
                       manifest_sha256=digest)
