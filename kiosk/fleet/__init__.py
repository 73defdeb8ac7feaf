"""Central side: the collector, ops views and per-kiosk provisioning behind `kiosk-fleet`."""
