"""CITIZENinfo Kiosk: the appliance software for no-copy service-point kiosks."""

__version__ = "0.1.0"
