"""The arm64 image an agency flashes, booted in qemu-system-aarch64 (./dev image-test)."""

import pygame
import pytest

from kiosk import config
from kiosk.display.screens import SLOT_CYCLE_S, SLOT_STEPS, Renderer, View
from kiosk.display.settings import DisplaySettings
from kiosk.flow import Screen, State
from tests.fixtures.image import agency_file, boot_files, boot_listing

# Booting under software emulation takes minutes (BOOT_LIMIT_S in tests/fixtures/image.py).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# What raspi-firmware needs to start a 64-bit Debian kernel (Debian's raspi image layout).
PI3 = {"bootcode.bin", "start.elf", "fixup.dat", "bcm2837-rpi-3-b.dtb",
       "bcm2837-rpi-3-b-plus.dtb"}
PI4 = {"start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb"}
BOTH = {"config.txt", "cmdline.txt", "vmlinuz", "initrd.img", "KIOSK-README.txt"}


def test_image_boot_partition_holds_what_a_pi_3_and_a_pi_4_need(image_file):
    listing = set(boot_listing(image_file))
    assert PI3 | PI4 | BOTH <= listing, sorted(PI3 | PI4 | BOTH - listing)
    assert "kiosk.toml" not in listing  # the agency's slot is empty in the image


def test_image_boot_config_starts_the_64_bit_kernel_with_its_initramfs(image_file, tmp_path):
    config, cmdline = boot_files(image_file, "config.txt", "cmdline.txt", into=tmp_path)
    lines = config.read_text().splitlines()
    for needed in ("arm_64bit=1", "upstream_kernel=1", "kernel=vmlinuz", "initramfs initrd.img"):
        assert needed in lines
    assert "root=LABEL=KIOSKROOT" in cmdline.read_text().split()


def test_image_first_boot_applies_the_agency_file(booted):
    assert booted.line("agency file applied=") == "yes", booted.console[-3000:]
    # A oneshot: inactive once it has run, and its result says how.
    assert booted.line("kiosk-firstboot.service active=") == "inactive result=success"


def test_image_kiosk_service_is_active_and_pings_its_watchdog(booted):
    assert booted.line("kiosk.service active=") == "active result=success", booted.console[-3000:]
    ping = booted.line("watchdog last ping at")
    assert ping and ping != "n/a", booted.report


def test_image_no_unit_failed(booted):
    assert booted.line("failed units=") == "[]", booted.console[-3000:]


def test_image_certificate_renewal_unit_runs_in_its_sandbox(booted):
    """kiosk-cert.service, started by hand in the booted image: the locked-down root unit reads
    the applied config and the credentials folder (the example file has a password account)."""
    assert booted.line("kiosk-cert.service result=") == (
        "success cert: no client certificate in /etc/kiosk/credentials: this kiosk uses a "
        "password account; nothing to renew"), booted.report


def test_image_root_is_read_only_under_an_overlay(booted):
    assert "initramfs:" not in booted.console  # no rescue shell
    assert booted.line("root file system=") == "overlay"
    assert booted.line("var-lib-kiosk.mount active=") == "active result=success"
    # The application's own partition, slot a on it (docs/image.md).
    assert booted.line("opt-kiosk.mount active=") == "active result=success"


def test_image_screen_shows_the_kiosk(booted, image_file, monkeypatch):
    """The emulated panel shows the kiosk's own idle screen, pixel for pixel as this machine
    renders it from the same agency file, except the card sliding into its slot (animated)."""
    assert (booted.line("display:") or "").lower() == "sdl video driver kmsdrm, 800x480", \
        booted.report
    assert booted.screenshot is not None, booted.qemu_log
    shown = pygame.image.load(str(booted.screenshot))
    png = image_file.parent / "image-test-screen.png"
    pygame.image.save(shown, str(png))
    assert shown.get_size() == (800, 480), png

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # this machine renders off-screen
    pygame.display.init()
    settings = DisplaySettings.from_config(config.parse(agency_file()))
    scene = Renderer(settings, (800, 480)).scene(View.of(State(screen=Screen.IDLE)))
    moving = pygame.Rect(0, 0, 0, 0)
    for step in range(SLOT_STEPS):
        for rect in scene.animate(scene.surface.copy(), (step + 0.5) * SLOT_CYCLE_S / SLOT_STEPS):
            moving = moving.union(rect) if moving.width else pygame.Rect(rect)
    still = [(x, y) for x in range(800) for y in range(480) if not moving.collidepoint(x, y)]
    differing = sum(shown.get_at(p) != scene.surface.get_at(p) for p in still)
    assert len(still) > 800 * 480 // 2 and differing <= len(still) // 100, \
        f"{differing} of {len(still)} still pixels differ from the idle screen: {png}"
