"""One exception tree for the whole kiosk.

Every leaf also inherits the built-in a caller would naturally catch (gpiozero's ``exc.py`` does
the same), so ``except ValueError`` around config parsing keeps working. Messages name the file,
key, reader or topic at fault and never contain citizen data: the errors that quote the values
at fault (a config, provisioning or registry problem) redact any ID-shaped number in them.
"""

from kiosk.logsafe import redact_ids


class KioskError(Exception):
    """Root of every error the kiosk raises on purpose."""


class ConfigError(KioskError, ValueError):
    """A config file or layer is invalid; ``problems`` lists every ``section.key: message``."""

    def __init__(self, problems, source="config"):
        self.problems = [redact_ids(problem) for problem in problems]
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.problems))


class CardError(KioskError, OSError):
    """A card could not be read; the message names the command and status word, never card data."""


class NotThaiIdCard(CardError):
    """The card answered SELECT of the Thai ID applet with 6A 82 (or equivalent)."""


class CardPulledDuringRead(CardError):
    """The card left the reader before the read finished."""


class ReaderUnavailable(CardError):
    """No PC/SC service, no reader, or no card in the reader."""


class InvalidCitizenId(CardError):
    """The citizen ID read from a Thai ID applet fails its check digit: a damaged or forged card."""


class StoreError(KioskError, RuntimeError):
    """The local SQLite store cannot do what was asked."""


class DiskFull(StoreError):
    """Free space is below the configured floor: the kiosk stops taking visits, never loses one."""


class TelemetryError(KioskError, RuntimeError):
    """The MQTT link or the message contract was violated."""


class MessageRejected(TelemetryError, ValueError):
    """An incoming message (command, ack, visit) is malformed, oversized, unknown or stale."""


class RolloutRefused(TelemetryError, ValueError):
    """A rollout's start or widening refused for its input, before anything is recorded or
    sent; ``field`` names the input at fault as the ``kiosk-fleet rollout`` verb and the
    console's form both call it (``version``, ``url``, ``sha256``, ``percent``,
    ``threshold``), and the message says what it must be."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


class CertRefused(KioskError, ValueError):
    """A kiosk's certificate request the signing service (``kiosk-fleet ca``) will not sign:
    the message names the kiosk and the reason, never the request's contents."""


class GpioError(KioskError, RuntimeError):
    """GPIO devices could not be set up as configured."""


class ProvisionError(KioskError, ValueError):
    """A first-boot file or a provisioning CSV row is invalid; the message may quote the cell
    at fault, an ID-shaped number in it redacted."""

    def __init__(self, message):
        super().__init__(redact_ids(message))


class RegistryError(KioskError, ValueError):
    """A registry file cannot be imported; ``problems`` lists each ``line N: column: rule``, and
    nothing of the file was kept."""

    def __init__(self, problems, source="registry"):
        self.problems = [redact_ids(problem) for problem in problems]
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.problems))


class CommandRejected(MessageRejected):
    """A command from ops was refused; the kiosk answers on its ``reply`` topic with the reason.

    ``command`` is the command name when the topic named a known one, ``correlation_id`` the
    command's id when the payload was readable, ``is_stale`` True for a config version that is
    not newer than the applied one (a retained config re-delivered on reconnect is stale).
    """

    def __init__(self, reason, *, command=None, correlation_id=None, is_stale=False):
        super().__init__(reason)
        self.command = command
        self.correlation_id = correlation_id
        self.is_stale = is_stale


class DisplayError(KioskError, RuntimeError):
    """The screen, its fonts or its sound cannot be set up (names the missing file or package)."""


class ReleaseError(KioskError, ValueError):
    """A release is refused: a bad signature, an unknown key, a file whose size or hash does not
    match its manifest, or a manifest that breaks the format. Nothing of it has been run."""
