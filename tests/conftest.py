"""Shared fixtures live in tests/fixtures/<name>.py; each area adds its module name here."""

pytest_plugins = [
    "tests.fixtures.config",
    "tests.fixtures.broker",
    "tests.fixtures.privacy",
    "tests.fixtures.card_stack",
    "tests.fixtures.display",
    "tests.fixtures.kiosk_world",
    "tests.fixtures.disk",
    "tests.fixtures.notify",
    "tests.fixtures.release_server",
    "tests.fixtures.telemetry",
    "tests.fixtures.appliance",
    "tests.fixtures.postgres",
    "tests.fixtures.console",
    "tests.fixtures.image",
]
