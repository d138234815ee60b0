"""Request and response bodies of the serving API (Pydantic; they make the OpenAPI docs).

Every request body is strict (a JSON ``true`` is not the number 1, ``"3"`` is not 3), finite
(``NaN``, ``Infinity`` and overflowing literals such as ``1e309`` are refused) and bounded by
ranges a real user-day can have, so a value that passes validation can never make a model output
non-finite or poison the user's stored state. Unknown fields are refused (a typo is a 422, not a
silently ignored field).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from glan_ray.data.features import CAT_CARDINALITIES
from glan_ray.schema import N_PAGES, PAGES, SEQ_LEN

DAY_S = 86_400.0
"""Upper bound of any duration (s): a day."""
MAX_SESSIONS_PER_DAY = 1_000.0
MAX_ENTRIES_PER_PAGE = 1_000.0
MAX_FOLLOWED = 100_000.0
MAX_VIEWS = 10_000
MAX_DAY = 1_000_000
MAX_USER_ID = 2**53 - 1
"""User ids stay exact in every JSON client (IEEE doubles)."""

Seconds = Annotated[float, Field(ge=0, le=DAY_S)]
Count = Annotated[float, Field(ge=0, le=MAX_SESSIONS_PER_DAY)]
PageEntries = Annotated[float, Field(ge=0, le=MAX_ENTRIES_PER_PAGE)]
Views = Annotated[int, Field(ge=0, le=MAX_VIEWS)]


def _per_page(what: str) -> object:
    return Field(
        min_length=N_PAGES,
        max_length=N_PAGES,
        description=f"{what}, one per page in the order {list(PAGES)}",
    )


EventId = Field(
    min_length=1,
    max_length=128,
    pattern=r"^[!-~]+$",
    description="client event id (1-128 printable ASCII characters, no spaces), unique per user "
    "and endpoint: a repeat with the same body returns the first answer and changes nothing; a "
    "repeat with another body is a 409",
)


class Body(BaseModel):
    """Base of every request body: strict types, finite numbers, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DayFeatures(Body):
    """The user's start-of-day features (the ``daily`` dataset's x and t fields)."""

    age: int = Field(ge=0, lt=CAT_CARDINALITIES["age"], description="age bucket (category)")
    region: int = Field(ge=0, lt=CAT_CARDINALITIES["region"], description="region (category)")
    activity: int = Field(
        ge=0, lt=CAT_CARDINALITIES["activity"], description="activity level (category)"
    )
    social_degree: float = Field(
        ge=0, le=MAX_FOLLOWED, description="followed creators who go live (count)"
    )
    weekday: int = Field(ge=0, le=6, description="day of the week of this day, 0 = Monday")
    usage_7d: Seconds = Field(description="mean daily usage time over the last 7 days (s)")
    usage_30d: Seconds = Field(description="mean daily usage time over the last 30 days (s)")
    sessions_7d: Count = Field(description="mean daily app entries over the last 7 days (count)")
    sessions_30d: Count = Field(description="mean daily app entries over the last 30 days (count)")
    page_dur_7d: list[Seconds] = _per_page("mean daily consumption over 7 days (s)")
    page_dur_14d: list[Seconds] = _per_page("mean daily consumption over 14 days (s)")
    page_entries_7d: list[PageEntries] = _per_page("mean daily entries over 7 days (count)")
    page_entries_14d: list[PageEntries] = _per_page("mean daily entries over 14 days (count)")
    seq_sessions: list[Count] = Field(
        min_length=SEQ_LEN,
        max_length=SEQ_LEN,
        description=f"app entries (count) of each of the last {SEQ_LEN} days, yesterday first",
    )
    seq_usage: list[Seconds] = Field(
        min_length=SEQ_LEN,
        max_length=SEQ_LEN,
        description=f"usage time (s) of each of the last {SEQ_LEN} days, yesterday first",
    )


class StartDay(Body):
    event_id: str = EventId
    day: int = Field(
        ge=0, le=MAX_DAY, description="day number; only moves forward (a new day > the last)"
    )
    features: DayFeatures


class StartDayResponse(BaseModel):
    user_id: int
    day: int
    r1_s: float = Field(description="initial return-to-go R̂₁ (seconds of usage today)")
    source: str = Field(description="lrtg, or usage_7d without L-RTG")


class Entry(Body):
    event_id: str = EventId
    day: int = Field(ge=0, le=MAX_DAY, description="the day this entry belongs to (the current)")
    obs: list[Annotated[float, Field(ge=-10.0, le=10.0)]] = Field(
        min_length=28,
        max_length=28,
        description="observation vector (schema.OBS_FEATURES), each in [-10, 10]",
    )
    hour: float = Field(ge=0, lt=24, description="local hour of the entry (h), e.g. 13.5")


class EntryResponse(BaseModel):
    page: str = Field(description=f"landing page, one of {list(PAGES)}")
    page_index: int = Field(description="index of the page in that list")
    probs: list[float] = Field(description="the policy's probability of each page")
    rtg_s: float = Field(description="return-to-go R̂_t at this entry (s)")
    session_idx: int = Field(description="index of this session in the day, from 0")
    policy: str = Field(description="glan or klan")


class SessionEnd(Body):
    event_id: str = EventId
    day: int = Field(ge=0, le=MAX_DAY, description="the day this session belongs to")
    video_views: list[Views] = _per_page("videos viewed in this session (count)")
    n_switches: int = Field(ge=0, le=127, description="page switches in this session (count)")
    usage_time: Seconds = Field(description="session usage time (s): the naive reward")


class SessionEndResponse(BaseModel):
    reward_s: float = Field(description="session reward r̂ (HRM, or the naive usage time) (s)")
    rtg_s: float = Field(description="R̂ for the next entry: R̂_t − r̂_t (s)")
    sessions: int = Field(description="sessions finished today")


class UserState(BaseModel):
    user_id: int
    day: int
    r1_s: float = Field(description="R̂₁ of the day (s)")
    rtg_s: float = Field(description="current return-to-go (s)")
    sessions: int = Field(description="sessions finished today")
    actions: list[int] = Field(description="page index of each session today")
    rewards_s: list[float] = Field(description="reward of each finished session today (s)")
    open_entry: bool = Field(description="an entry waits for its session end")


class Problem(BaseModel):
    """Every 4xx and 5xx body: what went wrong, and for 422 which fields."""

    detail: str | list[dict[str, object]] = Field(
        description="the problem; for 422 a list of {loc, msg, type} per invalid field"
    )
