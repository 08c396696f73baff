"""Serve: real-time state, candidate heads, recommendation tiers and the serving runtime."""
