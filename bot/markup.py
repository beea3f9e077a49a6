"""Escaping what people typed for each markup the bot writes, in one place.

Channels render messages and the read side renders reports; both escape with these,
so neither needs the other (a report is no channel's, and a channel no report's).
"""

from __future__ import annotations


def slack_escape(text: str) -> str:
    """Text shown literally in Slack mrkdwn or plain_text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
