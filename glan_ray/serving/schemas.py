"""Request and response bodies of the serving API (Pydantic; they make the OpenAPI docs)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator

from glan_ray.data.features import CAT_CARDINALITIES
from glan_ray.schema import N_PAGES, OBS_DIM, PAGES, SEQ_LEN

EventId = Field(min_length=1, max_length=128, description="client event id; a repeat is a no-op")


def _finite(values: list[float]) -> list[float]:
    if not all(math.isfinite(v) for v in values):
        raise ValueError("must hold finite numbers only")
    return values


class DayFeatures(BaseModel):
    """The user's start-of-day features (the ``daily`` dataset's x and t fields)."""

    model_config = ConfigDict(extra="forbid")
    age: int = Field(ge=0, lt=CAT_CARDINALITIES["age"])
    region: int = Field(ge=0, lt=CAT_CARDINALITIES["region"])
    activity: int = Field(ge=0, lt=CAT_CARDINALITIES["activity"])
    social_degree: float = Field(ge=0)
    weekday: int = Field(ge=0, le=6)
    usage_7d: float = Field(ge=0, description="mean daily usage over 7 days (s)")
    usage_30d: float = Field(ge=0)
    sessions_7d: float = Field(ge=0)
    sessions_30d: float = Field(ge=0)
    page_dur_7d: list[float] = Field(min_length=N_PAGES, max_length=N_PAGES)
    page_dur_14d: list[float] = Field(min_length=N_PAGES, max_length=N_PAGES)
    page_entries_7d: list[float] = Field(min_length=N_PAGES, max_length=N_PAGES)
    page_entries_14d: list[float] = Field(min_length=N_PAGES, max_length=N_PAGES)
    seq_sessions: list[float] = Field(min_length=SEQ_LEN, max_length=SEQ_LEN)
    seq_usage: list[float] = Field(min_length=SEQ_LEN, max_length=SEQ_LEN)

    @field_validator(
        "page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d",
        "seq_sessions", "seq_usage",
    )  # fmt: skip
    @classmethod
    def _check(cls, v: list[float]) -> list[float]:
        if any(x < 0 for x in _finite(v)):
            raise ValueError("must be >= 0")
        return v


class StartDay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = EventId
    day: int = Field(ge=0)
    features: DayFeatures


class StartDayResponse(BaseModel):
    user_id: int
    day: int
    r1_s: float = Field(description="initial return-to-go R̂₁ (seconds of usage today)")
    source: str = Field(description="lrtg, or usage_7d without L-RTG")


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = EventId
    obs: list[float] = Field(min_length=OBS_DIM, max_length=OBS_DIM,
                             description="observation vector (schema.OBS_FEATURES)")  # fmt: skip
    hour: float = Field(ge=0, lt=24)

    @field_validator("obs")
    @classmethod
    def _obs(cls, v: list[float]) -> list[float]:
        return _finite(v)


class EntryResponse(BaseModel):
    page: str = Field(description=f"landing page, one of {PAGES}")
    page_index: int
    probs: list[float]
    rtg_s: float
    session_idx: int
    policy: str


class SessionEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = EventId
    video_views: list[int] = Field(min_length=N_PAGES, max_length=N_PAGES)
    n_switches: int = Field(ge=0, le=127)
    usage_time: float = Field(ge=0, description="session usage (s): the naive reward")

    @field_validator("video_views")
    @classmethod
    def _views(cls, v: list[int]) -> list[int]:
        if any(x < 0 for x in v):
            raise ValueError("must be >= 0")
        return v


class SessionEndResponse(BaseModel):
    reward_s: float = Field(description="session reward r̂ (HRM, or the naive usage time)")
    rtg_s: float = Field(description="R̂ for the next entry: R̂_t − r̂_t")
    sessions: int


class UserState(BaseModel):
    user_id: int
    day: int
    r1_s: float
    rtg_s: float
    sessions: int
    actions: list[int]
    rewards_s: list[float]
    open_entry: bool
