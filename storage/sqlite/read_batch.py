"""Read batching for SQLite's conversations: `storage.read_batch.ReadBatch`, which every
backend shares, under the name it had when it was SQLite's alone."""

from __future__ import annotations

from storage.read_batch import ReadBatch

__all__ = ["ReadBatch"]
