"""The soak's centre lane, with real processes."""
