"""What a person at the counter can reach: the lockdown files the image installs.

The kiosk stands on a public counter with its USB ports, network socket and console in reach.
These read the files as shipped (``provisioning/filesystem``), so loosening one fails here; the
image test checks they land in a real root and that the consoles are masked.
"""

import re
from pathlib import Path

ETC = Path(__file__).resolve().parents[2] / "provisioning" / "filesystem" / "etc"


def active_lines(path):
    """The lines that take effect: no comments, no blanks."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def settings(path):
    return dict(re.split(r"\s*[= ]\s*", line, maxsplit=1) for line in active_lines(path)
                if not line.startswith("["))


def test_lockdown_firewall_drops_every_inbound_connection():
    rules = active_lines(ETC / "nftables.conf")
    policies = [line for line in rules if line.startswith("type filter hook")]
    assert policies and all(line.endswith("policy drop;") for line in policies)
    # The one port opened is the DHCP client's, for the server's offer; nothing listens.
    assert [line for line in rules if "dport" in line] == ["udp sport 67 udp dport 68 accept"]


def test_lockdown_usb_allows_only_hubs_until_the_agency_names_its_reader_and_panel():
    allowed = [line for line in active_lines(ETC / "usbguard/rules.conf")
               if line.startswith("allow")]
    assert allowed == ["allow id 1d6b:* with-interface equals { 09:00:* }"]


def test_lockdown_no_keyboard_shortcut_or_console_login_reaches_the_system():
    assert settings(ETC / "sysctl.d/90-kiosk.conf")["kernel.sysrq"] == "0"
    logind = settings(ETC / "systemd/logind.conf.d/kiosk.conf")
    assert (logind["NAutoVTs"], logind["ReserveVT"], logind["HandlePowerKey"]) == (
        "0", "0", "ignore")


def test_lockdown_ssh_takes_keys_only_and_never_root():
    sshd = settings(ETC / "ssh/sshd_config.d/kiosk.conf")
    keys = ("PasswordAuthentication", "KbdInteractiveAuthentication", "PermitRootLogin",
            "PermitEmptyPasswords")
    assert [sshd[key] for key in keys] == ["no"] * len(keys)
