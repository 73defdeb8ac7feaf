"""The programme's registry file: decoding, the CSV layout, and the rules each row must keep.

Standard library only (pure core): :mod:`kiosk.fleet.registry` stores what this returns. One row
per service point and service (docs/registry.md); a point's own columns repeat on each of its
rows and must agree. Every bad row is reported, by line, column and rule, and a file with any bad
row yields nothing: the importer must never keep half a registry, since a point missing from an
import is closed.
"""

import csv
import difflib
import io
import math
import re
from dataclasses import dataclass

from kiosk.errors import RegistryError
from kiosk.telemetry.topics import NO_COPY_STATES, ServiceEntry
from kiosk.visit import OTHER_SERVICE, TOKEN

POINT_COLUMNS = ("ministry", "department", "service_point_id", "name_th", "name_en", "province",
                 "district", "lat", "lon")
SERVICE_COLUMNS = ("service_id", "service_name_th", "service_name_en", "no_copy")
COLUMNS = POINT_COLUMNS + SERVICE_COLUMNS
#: Thailand's extent with a little margin (Mae Sai 20.46 N, Betong 5.61 N, 97.34 E, 105.64 E):
#: a pin outside is a typo or swapped lat/lon, not a service point.
LAT_RANGE = (5.5, 20.5)
LON_RANGE = (97.3, 105.7)
MAX_TEXT = 200
#: Decimal places a pin keeps (about 0.1 m): a re-import of the same file compares equal.
PIN_DECIMALS = 6
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Province:
    """One of the 77 provinces: its DOPA code, names, and its capital's coordinates."""

    code: str
    name_th: str
    name_en: str
    lat: float
    lon: float
    capital_district_th: str
    capital_district_en: str


#: A service of a point and the no-copy status its agency declared for it: the very entry a
#: kiosk's service-point message carries, since kiosk service ids are registry service ids.
Service = ServiceEntry


@dataclass(frozen=True)
class ServicePoint:
    """One service point as a file declares it; ``province`` is the DOPA code, ``lat``/``lon``
    None for a point not pinned yet, ``line`` the file line of its first row."""

    id: str
    ministry: str
    department: str
    name_th: str
    name_en: str
    province: str
    district: str
    lat: float | None
    lon: float | None
    services: tuple[Service, ...]
    line: int = 0

    @property
    def attributes(self):
        """What a point's history versions, apart from its pin and services."""
        return (self.ministry, self.department, self.name_th, self.name_en, self.province,
                self.district)

    @property
    def pin(self):
        return None if self.lat is None else (self.lat, self.lon)


@dataclass(frozen=True)
class RegistryFile:
    """A file read whole: its points in file order, its encoding and its count of rows."""

    points: tuple[ServicePoint, ...]
    encoding: str
    rows: int


def decode(data, source="registry"):
    """``(text, encoding)``: UTF-8 (a BOM stripped) when the bytes decode so, else cp874, the
    encoding Thai Windows' Excel saves CSV in. UTF-8 goes first because valid UTF-8 Thai is
    never valid-looking cp874 text by accident, while most cp874 bytes are invalid UTF-8."""
    if data.startswith(b"\xef\xbb\xbf"):
        encodings = ("utf-8-sig",)
    else:
        encodings = ("utf-8", "cp874")
    stops = []
    for encoding in encodings:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError as exc:
            stops.append(exc.start)
    # The encoding that read furthest is the one the file was meant in: its stop is the typo.
    raise RegistryError([f"byte {max(stops)}: is neither UTF-8 nor cp874 (Thai Windows); "
                         "save the sheet as CSV UTF-8"], source)


def parse_provinces(text):
    """The province table (``kiosk/fleet/data/provinces.csv``), in file order."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return tuple(Province(row["code"], row["name_th"], row["name_en"], float(row["lat"]),
                          float(row["lon"]), row["capital_district_th"],
                          row["capital_district_en"]) for row in rows)


def read(data, provinces, source="registry"):
    """A :class:`RegistryFile` from a file's bytes; raises :class:`RegistryError` listing every
    problem when the file cannot be decoded, its header is wrong, or any row is bad."""
    text, encoding = decode(data, source)
    points, rows = parse(text, provinces, source)
    return RegistryFile(points, encoding, rows)


def parse(text, provinces, source="registry"):
    """``(points, rows)`` from a file's text; see :func:`read`."""
    problems = []
    records = records_by_line(csv.reader(io.StringIO(text, newline="")), problems)
    _, header = next(records, (1, None))
    if problems:
        raise RegistryError(problems, source)
    if header is None:
        raise RegistryError(["line 1: the file is empty; the header is " + ",".join(COLUMNS)],
                            source)
    header = [name.strip() for name in header]
    _check_header(header, source)
    places = _ProvinceNames(provinces)
    points, seen_services, rows = {}, {}, 0
    for first_line, fields in records:
        if not any(field.strip() for field in fields):
            continue
        rows += 1
        if len(fields) != len(header):
            problems.append(f"line {first_line}: has {len(fields)} fields, the header "
                            f"{len(header)}; quote a field that holds a comma")
            continue
        row = _Row(first_line, dict(zip(header, fields, strict=True)), places)
        point, service = row.point(), row.service()
        if row.problems:
            problems.extend(row.problems)
            continue
        known = points.get(point.id)
        if known is None:
            points[point.id] = (point, [service])
        else:
            first, services = known
            problems.extend(_disagreements(first, point, first_line))
            key = (point.id, service.id)
            if key in seen_services:
                problems.append(f"line {first_line}: service_id: {service.id} is already on "
                                f"line {seen_services[key]} for service point {point.id}")
            services.append(service)
        seen_services.setdefault((point.id, service.id), first_line)
    if problems:
        raise RegistryError(problems, source)
    if not points:
        raise RegistryError(["no service point: the file has a header and no rows (an import "
                             "closes every point a file leaves out, so an empty one is refused)"],
                            source)
    return tuple(_with_services(point, services) for point, services in points.values()), rows


def records_by_line(reader, problems):
    """``(line, fields)`` of each record of a ``csv.reader``, ``line`` the file line it starts
    on. A record the csv module cannot split ends the reading with a problem naming its line,
    never the module's own error: a field over its size limit is most often a quote never
    closed, which takes the rest of the file into one field."""
    line = reader.line_num
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(f"line {line + 1}: {_unsplittable(exc)}")
            return
        yield line + 1, fields
        line = reader.line_num


def _unsplittable(exc):
    if "field limit" in str(exc):
        return (f"a field is longer than {csv.field_size_limit():,} characters; close the "
                "quote that opens it (a quote left open takes the rest of the file), or "
                "shorten it")
    return f"is not CSV ({exc}); save the sheet as CSV again"


def write(points, provinces):
    """CSV text of ``points`` in the layout :func:`parse` reads (a row per point and service,
    the province by its Thai name, CRLF line ends as spreadsheets write them)."""
    names = {province.code: province.name_th for province in provinces}
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for point in points:
        pin = ("", "") if point.pin is None else (repr(point.lat), repr(point.lon))
        for service in point.services:
            writer.writerow((point.ministry, point.department, point.id, point.name_th,
                             point.name_en, names[point.province], point.district, *pin,
                             service.id, service.name_th, service.name_en, service.no_copy))
    return out.getvalue()


def _check_header(header, source):
    problems = []
    for name in header:
        if name not in COLUMNS:
            hint = difflib.get_close_matches(name, COLUMNS, n=1)
            problems.append(f"line 1: unknown column {name!r}"
                            + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        problems.append(f"line 1: column(s) {', '.join(duplicated)} appear more than once")
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        problems.append(f"line 1: missing column(s) {', '.join(missing)}; the header is "
                        + ",".join(COLUMNS))
    if problems:
        raise RegistryError(problems, source)


def _disagreements(first, point, line):
    names = ("ministry", "department", "name_th", "name_en", "province", "district", "lat",
             "lon")
    values = (*point.attributes, point.lat, point.lon)
    expected = (*first.attributes, first.lat, first.lon)
    return [f"line {line}: {name}: differs from line {first.line}, the first row of service "
            f"point {point.id} (a point's columns repeat unchanged on each of its rows)"
            for name, value, want in zip(names, values, expected, strict=True) if value != want]


def _with_services(point, services):
    return ServicePoint(point.id, *point.attributes, point.lat, point.lon, tuple(services),
                        point.line)


class _ProvinceNames:
    """Finds a province by its Thai name, or its English one whatever the case, spaces and
    hyphens (``Phang-nga``, ``Phang Nga``, ``Buriram``), as agencies write them: with or
    without ``จังหวัด`` or ``Province``, and Bangkok and Ayutthaya by their short names."""

    ALIASES = {"กรุงเทพฯ": "10", "กทม.": "10", "กทม": "10", "ayutthaya": "14",
               "อยุธยา": "14"}

    def __init__(self, provinces):
        self.by_name = {}
        for province in provinces:
            self.by_name[province.name_th] = province
            self.by_name[self._key(province.name_en)] = province
        by_code = {province.code: province for province in provinces}
        self.by_name.update({alias: by_code[code] for alias, code in self.ALIASES.items()
                             if code in by_code})
        self.names = [p.name_th for p in provinces] + [p.name_en for p in provinces]

    @staticmethod
    def _key(name):
        key = "".join(name.lower().replace("-", " ").split()).removeprefix("จังหวัด")
        return key.removesuffix("province") if key.isascii() else key

    def find(self, name):
        return self.by_name.get(self._key(name))

    def hint(self, name):
        close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
        return f" (did you mean {close[0]}?)" if close else ""


class _Row:
    """One row's values, checked column by column; ``problems`` collects every rule broken."""

    def __init__(self, line, values, places):
        self.line, self.values, self.places = line, values, places
        self.problems = []

    def _problem(self, column, rule):
        self.problems.append(f"line {self.line}: {column}: {rule}")

    def text(self, column):
        value = self.values[column].strip()
        if not value:
            self._problem(column, "is empty; every row needs it")
        elif len(value) > MAX_TEXT:
            self._problem(column, f"is {len(value)} characters, at most {MAX_TEXT}")
        elif _CONTROL.search(value):
            self._problem(column, "holds a line break or control character")
        return value

    def token(self, column):
        value = self.values[column].strip()
        if not TOKEN.fullmatch(value):
            self._problem(column, f"{value!r} must be 1-64 letters, digits or '_.:-', starting "
                          "with a letter or digit (kiosks send it as is)")
        return value

    def coordinate(self, column, bounds):
        text = self.values[column].strip()
        try:
            value = float(text)
        except ValueError:
            self._problem(column, f"{text!r} is not a number (decimal degrees, e.g. 13.7563)")
            return None
        if not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
            self._problem(column, f"{text} is outside Thailand ({bounds[0]} to {bounds[1]}); "
                          "lat and lon swapped?")
            return None
        return round(value, PIN_DECIMALS)

    def pin(self):
        lat_text, lon_text = self.values["lat"].strip(), self.values["lon"].strip()
        if not lat_text and not lon_text:
            return None, None  # registered, not pinned yet
        if not lat_text or not lon_text:
            self._problem("lat" if not lat_text else "lon",
                          "is empty while the other coordinate is given; give both or neither")
            return None, None
        return self.coordinate("lat", LAT_RANGE), self.coordinate("lon", LON_RANGE)

    def province(self):
        name = self.values["province"].strip()
        province = self.places.find(name)
        if province is None:
            self._problem("province", f"{name!r} is not one of the 77 provinces' Thai or English "
                          f"names{self.places.hint(name)}")
            return ""
        return province.code

    def point(self):
        lat, lon = self.pin()
        return ServicePoint(
            id=self.token("service_point_id"), ministry=self.text("ministry"),
            department=self.text("department"), name_th=self.text("name_th"),
            name_en=self.text("name_en"), province=self.province(),
            district=self.text("district"), lat=lat, lon=lon, services=(), line=self.line)

    def service(self):
        no_copy = self.values["no_copy"].strip()
        if no_copy not in NO_COPY_STATES:
            self._problem("no_copy", f"{no_copy!r} must be one of {', '.join(NO_COPY_STATES)}")
        service_id = self.token("service_id")
        if service_id == OTHER_SERVICE:
            self._problem("service_id", f"{service_id!r} is reserved: it is the kiosk's "
                          "\"other service\" choice, counted apart; give the service its own id")
        return Service(service_id, self.text("service_name_th"),
                       self.text("service_name_en"), no_copy)
