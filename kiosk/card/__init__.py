"""Reading the Thai national ID card: pure protocol and fields, the PC/SC adapter, the probe."""
