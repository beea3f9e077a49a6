"""Slack: the channel, its Block Kit formatting, and OAuth installation."""
