"""The arm64 image an agency flashes, booted in qemu-system-aarch64 (./dev image-test)."""

import pygame
import pytest

from tests.fixtures.image import boot_files, boot_listing

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


def test_image_root_is_read_only_under_an_overlay(booted):
    assert "initramfs:" not in booted.console  # no rescue shell
    assert booted.line("root file system=") == "overlay"
    assert booted.line("var-lib-kiosk.mount active=") == "active result=success"


def test_image_screen_shows_the_kiosk(booted, image_file):
    assert "kmsdrm" in (booted.line("display:") or "").lower(), booted.report
    assert booted.screenshot is not None, booted.qemu_log
    surface = pygame.image.load(str(booted.screenshot))
    png = image_file.parent / "image-test-screen.png"
    pygame.image.save(surface, str(png))
    colours = {surface.get_at((x, y))[:3] for x in range(0, surface.get_width(), 16)
               for y in range(0, surface.get_height(), 16)}
    assert len(colours) > 8, f"a blank screen ({len(colours)} colours): {png}"
