"""Telegram: the channel, its message formatting, and its HTTP transport."""
