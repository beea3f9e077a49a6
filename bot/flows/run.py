"""A run: one participant's way through one guide, as plain data the engine returns."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from bot.flows.answers import AnswerValue


class RunStatus(StrEnum):
    CONSENT = "consent"  # waiting for the participant to agree; nothing is kept yet
    ACTIVE = "active"
    FINISHED = "finished"
    STOPPED = "stopped"
    DECLINED = "declined"
    EXPIRED = "expired"

    @property
    def ended(self) -> bool:
        return self not in (RunStatus.CONSENT, RunStatus.ACTIVE)


class RunState(BaseModel):
    """Everything needed to resume a run; stored as JSON between messages.

    The guide is pinned by the hash of its source, so that editing a live guide
    never changes the questions of a run already under way.
    """

    run_id: str
    guide_id: str
    guide_version: int
    guide_hash: str
    language: str
    status: RunStatus
    step: str | None = None
    answers: dict[str, AnswerValue] = Field(default_factory=dict)
    asked: list[str] = Field(default_factory=list)
    pending: list[str] = Field(default_factory=list)
    choosing_language: bool = False
    # Paced gatherings: how many of the guide's questions are open to the room (None:
    # self-paced), and whether this run is waiting at the next one for the group.
    gate: int | None = None
    waiting: bool = False
    # The question a stopped or expired run was left at (`step` is None once it ends):
    # where people stop, for the digest.
    left_at: str | None = None
    started_at: datetime
    updated_at: datetime
