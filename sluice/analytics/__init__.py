"""Analytics: reports read from the marts and the registry (never on a serving path)."""
