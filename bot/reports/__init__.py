"""The read side: summaries, digests, exports, and the one minimum-group rule."""
