"""Intake: event contracts, the raw event log, Personalize and tabular inputs, trackers."""
