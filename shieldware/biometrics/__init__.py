"""Behavioural biometrics: telemetry from the browser collector, movement features, a human-likeness score."""
