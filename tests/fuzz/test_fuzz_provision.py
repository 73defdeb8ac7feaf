"""Fuzzing the two CSV readers an agency feeds: the registry of service points and the kiosk
list ``kiosk-fleet provision`` reads. Any file, spoiled as a spreadsheet or a broken copy spoils
it, is read or refused with the module's own error (never the csv module's, nor a crash), a
refused file leaves nothing behind (no registry version, no bundle), and no problem quotes a
13-digit number (an ID typed into the wrong cell)."""

import csv
import datetime as dt
import io
import itertools
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from kiosk.errors import ProvisionError, RegistryError
from kiosk.fleet import registry, registry_csv
from kiosk.fleet.provision import BROKER_DIR, provision
from tests.fuzz.budget import budget
from tests.fuzz.mutations import assert_no_id, id_bearing_texts

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "kiosk/fleet/data/registry-sample.csv"
REGISTRY_ROWS = list(csv.reader(io.StringIO(SAMPLE.read_text(encoding="utf-8"), newline="")))
KIOSK_ROWS = list(csv.reader(io.StringIO(
    (ROOT / "provisioning/kiosks.example.csv").read_text(encoding="utf-8"), newline="")))
PROVINCES = registry.provinces()
#: One field over the csv module's limit: a quote left open takes the rest of a file.
UNCLOSED = '"' + "x" * (csv.field_size_limit() + 10)
#: When the fuzzed registries are imported, one second apart (history only grows forward).
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_clock = itertools.count(1)


def cells():
    """What a spreadsheet cell may hold, biased to each column's checks at their edges."""
    return st.one_of(
        st.text(max_size=12), id_bearing_texts(),
        st.sampled_from(["", " ", '"', ",", "\n", "\r", "\x00", ";", "other", "nan", "inf",
                         "1e400", "-0", "13.7563", "100.5018", "105.1", "18.2", "Bangkok",
                         "กรุงเทพฯ", "Chiang Mia", "in_progress", "maybe", "dopa-10",
                         "dopa.id_card; dopa.birth", "bkk-phranakhon-01", "_broker", "a/b",
                         "x" * 201, "\u202e", "๑๓.๗", UNCLOSED]))


@st.composite
def csv_files(draw, rows):
    """``rows`` (a header and records) with a few cells changed, rows dropped or repeated,
    written as a spreadsheet saves them; sometimes with characters spoiled in the text or a
    quote left open before a field over the csv module's limit, then encoded as agencies save
    (UTF-8, with a BOM, cp874) or as no one should."""
    rows = [list(r) for r in rows]
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(rows) - 1))
        action = draw(st.sampled_from(["cell", "cell", "cell", "drop", "repeat", "widen"]))
        if action == "cell" and rows[at]:
            rows[at][draw(st.integers(0, len(rows[at]) - 1))] = draw(cells())
        elif action == "drop":
            del rows[at]
        elif action == "repeat":
            rows.insert(draw(st.integers(0, len(rows))), list(rows[at]))
        elif action == "widen":
            rows[at].append(draw(cells()))
        if not rows:
            break
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n"]))).writerows(rows)
    text = out.getvalue()
    for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(['"', ",", "\n", "\r", "\x00", "\ufeff"]) |
                                st.text(max_size=3)) + text[at + draw(st.integers(0, 2)):]
    if draw(st.integers(0, 19)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + UNCLOSED + text[at:]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp874", "raw"]))
    if encoding == "raw":
        return FileBytes(text.encode() + draw(st.binary(max_size=4)))
    return FileBytes(text.encode(encoding, errors="replace"))


class FileBytes(bytes):
    """A file's bytes, shown cut short: a failing example holding a field of 130 kB would drown
    its report, and hypothesis warns of such a repr (an error in this suite), hiding the
    failure itself."""

    def __repr__(self):
        if len(self) <= 2000:
            return super().__repr__()
        return f"{bytes(self[:1000])!r} + <{len(self) - 2000} bytes> + {bytes(self[-1000:])!r}"


def registry_files():
    """A few rows of the shipped sample registry (a point's services together or apart)."""
    picks = st.lists(st.integers(1, len(REGISTRY_ROWS) - 1), min_size=1, max_size=6)
    return picks.flatmap(lambda rows: csv_files(
        [REGISTRY_ROWS[0], *(REGISTRY_ROWS[n] for n in rows)]))


def without_lines(points):
    return [(p.id, p.attributes, p.pin, p.services) for p in points]


@budget(200)
@given(data=registry_files())
def test_fuzz_registry_csv_read_gives_a_registry_file_or_a_registry_error(data):
    """``registry_csv.read`` (``kiosk-fleet registry import`` before it writes)."""
    try:
        read = registry_csv.read(data, PROVINCES, "registry.csv")
    except RegistryError as exc:
        event("refused")
        assert exc.problems and all(p.startswith(("line ", "byte ", "no service point"))
                                    for p in exc.problems)
        assert_no_id(exc, *exc.problems)
        return
    event("accepted")
    assert read.points and read.rows >= len(read.points)
    # What the console's export writes is read back as the same points.
    again, _ = registry_csv.parse(registry_csv.write(read.points, PROVINCES), PROVINCES)
    assert without_lines(again) == without_lines(read.points)


@pytest.fixture
def store(tmp_path):
    opened = registry.open_registry(tmp_path / "fleet.sqlite3")
    yield opened
    opened.close()


def versions(store):
    return {kind: store.models[kind].select().count() for kind in (*registry.KINDS, "imports")}


@budget(40)
@given(data=registry_files())
def test_fuzz_registry_import_keeps_a_good_file_and_nothing_of_a_refused_one(tmp_path, store,
                                                                             data):
    """``registry.import_file``: a refused file adds no version and no import record."""
    path = tmp_path / "registry.csv"
    path.write_bytes(data)
    before = versions(store)
    as_of = START + dt.timedelta(seconds=next(_clock))
    try:
        registry.import_file(store, path, as_of=as_of)
    except RegistryError as exc:
        event("refused")
        assert_no_id(exc, *exc.problems)
        assert versions(store) == before
        return
    event("imported")
    assert versions(store)["imports"] == before["imports"] + 1


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    """The shipped sample registry, which holds every point the example kiosk list names."""
    opened = registry.open_registry(tmp_path_factory.mktemp("fleet") / "fleet.sqlite3")
    registry.import_file(opened, SAMPLE, as_of=START)
    yield opened
    opened.close()


@budget(50)
@given(data=csv_files(KIOSK_ROWS))
def test_fuzz_provision_gives_whole_bundles_or_a_provision_error(tmp_path, sample_store, data):
    """``kiosk-fleet provision``: a file refused whole writes nothing; otherwise each good row
    is a complete bundle, each bad one a ``line N:`` problem, and no half bundle is left."""
    source = tmp_path / f"kiosks-{next(_clock)}.csv"
    source.write_bytes(data)
    out = source.with_suffix("")
    try:
        result = provision(source, out, registry=sample_store, broker="mqtt.example.go.th")
    except ProvisionError as exc:
        event("file refused")
        assert_no_id(exc)
        assert not out.exists()
        return
    event(f"{len(result.bundles)} bundle(s), {len(result.problems)} problem(s)")
    assert_no_id(*result.problems)
    assert all(p.startswith("line ") for p in result.problems)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([b.name for b in result.bundles]
                             + ([BROKER_DIR] if result.bundles else []))
    for bundle in result.bundles:
        assert sorted(p.name for p in bundle.iterdir()) == ["kiosk.toml", "mqtt-password"]
