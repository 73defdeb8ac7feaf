"""What may reach a log: ID-shaped numbers inside any text, and the filter every CLI installs."""

import logging
import uuid

import pytest

from kiosk import logsafe
from kiosk.cli import VERBS, run_verbs
from kiosk.telemetry import topics

ID_SHAPED = ["1-2345-67890-12-3", "1 2345 67890 12 3", "1.2345.67890.12.3", "1234567890123",
             "๑-๒๓๔๕-๖๗๘๙๐-๑๒-๓", "1-234567890123", "1 2345 67890-12 3",
             "1\u00a02345\u00a067890\u00a012\u00a03", "1\u20132345\u201367890\u201312\u20133",
             "1/2345/67890/12/3"]
NOT_ID_SHAPED = ["2025-01-31T02:41:07.250Z", "2025-01-31 02:41:07,250",
                 "01234567-8901-2345-6789-012345678901", "a1b2c3d4-1234-5678-9012-345678901234",
                 "0b9a3c1e-6f1d-4c1b-9d35-2a7f5c3e9b10", "0.1.0", "2.2.0+deb12u1",
                 "10.20.300.4000", "192.168.100.200", "10.0.0.1:8883", "fe80::1234:5678",
                 "epoch 2147483647 seq 99999999999", "12-3456-7890"]


@pytest.mark.parametrize("written", ID_SHAPED)
def test_logsafe_finds_an_id_written_inside_longer_text(written):
    text = f"reader said: card {written} (ร้านค้า)"
    assert logsafe.holds_id(text)
    assert logsafe.redact_ids(text) == "reader said: card # (ร้านค้า)"
    assert topics.find_long_numbers({"error": text}) == ["$.error"]


@pytest.mark.parametrize("text", NOT_ID_SHAPED)
def test_logsafe_leaves_times_ids_versions_and_addresses_alone(text):
    line = f"kiosk bkk-001 at {text} said {text}"
    assert not logsafe.holds_id(line)
    assert logsafe.redact_ids(line) == line


def test_logsafe_never_flags_a_uuid4_event_id():
    """Event ids are uuid4s on the wire: one flagged would be a visit no builder will send."""
    flagged = [i for i in (str(uuid.uuid4()) for _ in range(20_000)) if logsafe.holds_id(i)]
    assert flagged == []


def test_logsafe_filter_redacts_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("tests.logsafe")
    caplog.handler.addFilter(logsafe.RedactingFilter())
    try:
        logger.warning("reply error: %s", "card 1 2345 67890 12 3 refused")
        try:
            raise ValueError("bad 1.2345.67890.12.3")
        except ValueError:
            logger.exception("failed")
    finally:
        caplog.handler.filters.clear()
    assert "reply error: card # refused" in caplog.text
    assert "bad #" in caplog.text and "67890" not in caplog.text


def test_logsafe_filter_redacts_a_stack_and_passes_a_broken_record_on():
    """A stack dump can quote a local's value; a record whose arguments do not fit its message
    still reaches the handler, which reports the broken record itself."""
    stacked = logging.LogRecord("t", logging.INFO, __file__, 1, "here", None, None,
                                sinfo="Stack (most recent call last):\n  cid='1234567890123'")
    broken = logging.LogRecord("t", logging.INFO, __file__, 1, "%d visits", ("many",), None)
    assert logsafe.RedactingFilter().filter(stacked) and "cid='#'" in stacked.stack_info
    assert logsafe.RedactingFilter().filter(broken) and broken.args == ("many",)


def test_logsafe_filter_is_installed_by_every_cli_entry_point(example_config_path):
    root = logging.getLogger()
    try:
        assert run_verbs("kiosk", VERBS, ["config", "check", str(example_config_path)]) == 0
        assert all(any(isinstance(f, logsafe.RedactingFilter) for f in handler.filters)
                   for handler in root.handlers)
    finally:
        for handler in root.handlers:
            handler.filters = [f for f in handler.filters
                               if not isinstance(f, logsafe.RedactingFilter)]


def test_logsafe_printable_escapes_control_characters_and_caps_the_length():
    forged = "ok\n2025-01-31 02:41:07,250 ERROR kiosk: forged\r\x1b[2J\u202eevil\x00"
    shown = logsafe.printable(forged)
    assert shown == ("ok\\x0a2025-01-31 02:41:07,250 ERROR kiosk: forged\\x0d\\x1b[2J"
                     "\\u202eevil\\x00")
    assert logsafe.printable("ข" * 1000, limit=10) == "ข" * 10 + "…(+990 chars)"
    assert logsafe.printable("สวัสดี 1.5 °C") == "สวัสดี 1.5 °C"


def test_config_and_registry_errors_redact_an_id_shaped_value_they_quote():
    """Found by the config fuzzer: a problem quoting the bad value carried a citizen ID typed into
    a config or registry field to the log and the ops console."""
    from kiosk.errors import ConfigError, RegistryError

    for error in (ConfigError(["identity.kiosk_id: '1101700203451' is not a kiosk id"]),
                  RegistryError(["line 3: service_point_id: 1-1017-00203-45-1 is not valid"])):
        assert "1101700203451" not in str(error)
        assert "1-1017-00203-45-1" not in str(error)
        assert "#" in error.problems[0]
