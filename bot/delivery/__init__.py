"""Delivery: draining the outbox, and the platforms' rate limits."""
