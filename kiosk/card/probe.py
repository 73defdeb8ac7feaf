"""``kiosk card probe``: the technician's check of reader and card.

Lists readers, the card's ATR, whether it is a Thai ID card, its citizen ID masked to the check
digit (``x-xxxx-xxxxx-xx-d``), whether the check digit is valid, whether the card is expired,
and the read time. Exit status: 0 a Thai ID card read with a valid check digit; 2 no PC/SC
service, no reader, unknown ``--reader`` or no card; 3 not a Thai ID card or unreadable; 4 a Thai
ID card whose check digit is invalid. ``--watch`` prints one line per inserted card until Ctrl-C.
"""

import datetime
import json
import queue
import signal
import time

from kiosk.card import reader as pcsc
from kiosk.card import thai_id
from kiosk.errors import CardError, CardPulledDuringRead, NotThaiIdCard, ReaderUnavailable
from kiosk.flow import CardInserted

OK, NO_READER, NOT_READ, BAD_CHECK_DIGIT = 0, 2, 3, 4


def add_arguments(parser):
    parser.add_argument("action", choices=["probe"], help="probe the reader and the card in it")
    parser.add_argument("--json", action="store_true", help="print one JSON object (per card)")
    parser.add_argument(
        "--watch", action="store_true", help="probe every inserted card until Ctrl-C"
    )
    parser.add_argument("--reader", metavar="NAME", help="use the reader whose name contains NAME")


def probe(wanted=None, today=None):
    """``(exit_status, report)``; the report holds derived facts only, never the citizen ID."""
    report = dict(
        reader=None,
        readers=[],
        atr=None,
        is_thai_id=None,
        cid_masked=None,
        cid_valid=None,
        expired=None,
        read_ms=None,
    )
    try:
        report["readers"] = pcsc.list_readers()
    except ReaderUnavailable:
        return NO_READER, dict(report, error="no PC/SC service (is pcscd running?)")
    if not report["readers"]:
        return NO_READER, dict(report, error="no card reader connected")
    report["reader"] = pcsc.choose_reader(report["readers"], wanted)
    if report["reader"] is None:
        return NO_READER, dict(report, error=f"unknown reader {wanted!r}")
    started = time.monotonic()
    try:
        with pcsc.connect(wanted) as card:
            report["atr"] = card.atr.hex(" ").upper()
            thai_id.select_applet(card.transmit, card.atr)
            report["is_thai_id"] = True
            cid = thai_id.parse_cid(thai_id.read_field(card.transmit, card.atr, "cid"))
            report["cid_masked"], report["cid_valid"] = (
                thai_id.mask_cid(cid),
                thai_id.is_valid_cid(cid),
            )
            del cid
            expiry = thai_id.parse_date(
                thai_id.read_field(card.transmit, card.atr, "expiry_date"), "expiry_date"
            )
            report["expired"] = thai_id.is_expired(expiry, today or datetime.date.today())
    except CardPulledDuringRead:
        return NO_READER, dict(report, error="no card in the reader")
    except ReaderUnavailable as exc:
        return NO_READER, dict(report, error=str(exc))
    except NotThaiIdCard:
        return NOT_READ, dict(report, is_thai_id=False, error="not a Thai ID card")
    except CardError as exc:
        return NOT_READ, dict(report, error=f"could not read the card: {exc}")
    report["read_ms"] = round((time.monotonic() - started) * 1000, 1)
    if not report["cid_valid"]:
        return BAD_CHECK_DIGIT, dict(report, error="citizen ID check digit is invalid")
    return OK, report


def format_report(report):
    """The human form: one ``label: value`` per line."""

    def yes_no(value):
        return "-" if value is None else ("yes" if value else "no")

    lines = [
        f"readers:   {', '.join(report['readers']) or 'none'}",
        f"reader:    {report['reader'] or '-'}",
        f"ATR:       {report['atr'] or '-'}",
        f"Thai ID:   {yes_no(report['is_thai_id'])}",
    ]
    if report["cid_masked"]:
        lines.append(
            f"CID:       {report['cid_masked']} "
            f"(check digit {'valid' if report['cid_valid'] else 'INVALID'})"
        )
    lines.append(f"expired:   {yes_no(report['expired'])}")
    if report["read_ms"] is not None:
        lines.append(f"read time: {report['read_ms']} ms")
    if report.get("error"):
        lines.append(f"error:     {report['error']}")
    return "\n".join(lines)


def format_line(report):
    """The one-line form ``--watch`` prints per card."""
    if report.get("error"):
        return f"{report['reader']}: {report['atr'] or '-'}: {report['error']}"
    return (
        f"{report['reader']}: {report['atr']}: Thai ID {report['cid_masked']} "
        f"{'expired' if report['expired'] else 'valid'}, {report['read_ms']} ms"
    )


def main(args):
    if args.watch:
        return _watch(args)
    status, report = probe(args.reader)
    print(json.dumps(report, ensure_ascii=False) if args.json else format_report(report))
    return status


class _NoKeys:
    """The watch loop never asks the service to read, so it never hashes a citizen ID."""

    def hash(self, cid):
        raise RuntimeError("kiosk card probe does not hash citizen IDs")


def _watch(args):
    # "Ctrl-C to stop" must hold even when started with SIGINT ignored (a shell's background
    # job): Python then installs no handler of its own, and the loop would never end.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    events = queue.Queue()
    service = pcsc.CardService(events.put, _NoKeys(), reader=args.reader)
    service.start()
    print(f"watching {args.reader or 'the first reader'}; Ctrl-C to stop", flush=True)
    try:
        while True:
            event = events.get()
            if isinstance(event, CardInserted):
                _status, report = probe(args.reader)
                print(
                    json.dumps(report, ensure_ascii=False) if args.json else format_line(report),
                    flush=True,
                )
    except KeyboardInterrupt:
        return OK
    finally:
        service.stop()
