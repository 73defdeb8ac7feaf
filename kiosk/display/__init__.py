"""What the citizen sees and touches: pygame-ce screens, Thai text, QR, audio."""
