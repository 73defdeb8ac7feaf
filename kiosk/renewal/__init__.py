"""Renewing the kiosk's client certificate on the device: a root unit makes the key and the
request and installs the certificate; the kiosk process only relays them over its MQTT link
(docs/credentials.md)."""
