"""The fault soak (issue 15): scripted visits through the real stack while faults are injected."""
