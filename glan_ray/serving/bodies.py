"""Request and response bodies of the serving API (Pydantic; they make the OpenAPI docs).

Every request body is strict (a JSON ``true`` is not the number 1, ``"3"`` is not 3), finite
(``NaN``, ``Infinity`` and overflowing literals such as ``1e309`` are refused) and bounded by
ranges a real user-day can have, so a value that passes validation can never make a model output
non-finite or poison the user's stored state. Unknown fields are refused (a typo is a 422, not a
silently ignored field).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import JsonDict

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
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,15}")


def _decimal_id(v: object) -> object:
    """A user id in the path is written one way only: plain decimal digits. Pydantic's lax
    integers would also take ``1_000``, ``+5``, ``1.0``, `` 7`` and ``07`` (one user, many
    spellings); those are a 422 naming the path parameter."""
    if isinstance(v, str) and not _DECIMAL.fullmatch(v):
        raise ValueError(
            "a user id is written in plain decimal digits (no sign, leading zero, underscore, "
            "space or fraction), at most 16 of them"
        )
    return v


UserId = Annotated[
    int,
    Path(ge=0, le=MAX_USER_ID, description="the user's id: plain decimal digits, e.g. 42"),
    BeforeValidator(_decimal_id),  # after Path: its bounds stay minimum/maximum in the schema
]
"""The ``{user_id}`` path parameter (strict: see ``_decimal_id``)."""


def _integral(v: object) -> object:
    """3.0 is the integer 3 (as in JSON Schema); 3.5, true and "3" stay refused (strict)."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**63 else v


Int = Annotated[int, BeforeValidator(_integral)]
"""A strict integer that also takes an integral JSON number such as 3.0."""
Seconds = Annotated[float, Field(ge=0, le=DAY_S)]
Count = Annotated[float, Field(ge=0, le=MAX_SESSIONS_PER_DAY)]
PageEntries = Annotated[float, Field(ge=0, le=MAX_ENTRIES_PER_PAGE)]
Page = Literal["featured", "explore", "following"]
assert get_args(Page) == PAGES, "schema.PAGES is the one list of pages"
Views = Annotated[int, Field(ge=0, le=MAX_VIEWS), BeforeValidator(_integral)]


def _per_page(what: str) -> Any:  # Any, as pydantic's Field is typed: a field's default
    return Field(
        min_length=N_PAGES,
        max_length=N_PAGES,
        description=f"{what}, one per page in the order {list(PAGES)}",
    )


EventId = Field(
    min_length=1,
    max_length=128,
    pattern=r"^[!-~]+$",
    description="client event id (1-128 printable ASCII characters, no spaces), unique per user, "
    "endpoint and day. A repeat with the same body, while its day is the user's current day or "
    "the day before, returns the first answer and changes nothing; a repeat with another body is "
    "a 409; an event of an older day is a 409 and never applied",
)


class Body(BaseModel):
    """Base of every request body: strict types, finite numbers, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DayFeatures(Body):
    """The user's start-of-day features (the ``daily`` dataset's x and t fields)."""

    age: Int = Field(ge=0, lt=CAT_CARDINALITIES["age"], description="age bucket (category)")
    region: Int = Field(ge=0, lt=CAT_CARDINALITIES["region"], description="region (category)")
    activity: Int = Field(
        ge=0, lt=CAT_CARDINALITIES["activity"], description="activity level (category)"
    )
    social_degree: float = Field(
        ge=0, le=MAX_FOLLOWED, description="followed creators who go live (count)"
    )
    weekday: Int = Field(ge=0, le=6, description="day of the week of this day, 0 = Monday")
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


EXAMPLE_FEATURES: JsonDict = {
    "age": 2, "region": 5, "activity": 1, "social_degree": 12.0, "weekday": 2,
    "usage_7d": 1500.0, "usage_30d": 1400.0, "sessions_7d": 4.0, "sessions_30d": 3.5,
    "page_dur_7d": [900.0, 300.0, 200.0], "page_dur_14d": [850.0, 320.0, 180.0],
    "page_entries_7d": [3.0, 1.0, 0.5], "page_entries_14d": [2.8, 1.1, 0.6],
    "seq_sessions": [4.0] * SEQ_LEN, "seq_usage": [1500.0] * SEQ_LEN,
}  # fmt: skip


class StartDay(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"event_id": "d-42", "day": 42, "features": EXAMPLE_FEATURES}]
        }
    )
    event_id: str = EventId
    day: Int = Field(
        ge=0, le=MAX_DAY, description="day number; only moves forward (a new day > the last)"
    )
    features: DayFeatures
    last_exit_page: Page | None = Field(
        default=None,
        description="the page the user's last session (on an earlier day) exited from; omitted: "
        "as the server saw the previous day end, else featured",
    )


class StartDayResponse(BaseModel):
    user_id: int
    day: int
    r1_s: float = Field(description="initial return-to-go R̂₁ (seconds of usage today)")
    source: str = Field(description="lrtg, or usage_7d without L-RTG")


class Entry(Body):
    """An app entry: what the client knows now. The server adds the day's features and what it
    holds of the day so far (entries, consumption per page, the last drop-off and exit page)
    and builds the model's observation with the simulator's and training's own definition."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"event_id": "e-42-0", "day": 42, "hour": 13.5, "live_count": 2}]
        }
    )
    event_id: str = EventId
    day: Int = Field(ge=0, le=MAX_DAY, description="the day this entry belongs to (the current)")
    hour: float = Field(ge=0, lt=24, description="local time of the entry (h, e.g. 13.5)")
    live_count: Int = Field(
        ge=0, le=MAX_FOLLOWED, description="followed creators live right now (count)"
    )


class EntryResponse(BaseModel):
    page: str = Field(description=f"landing page, one of {list(PAGES)}")
    page_index: int = Field(description="index of the page in that list")
    probs: list[float] = Field(
        description="the serving distribution the page was drawn from (the policy's π after "
        "the exploration: one-hot on argmax π when greedy)"
    )
    propensity: float | None = Field(
        default=None,
        description="probability of the served page under probs (the logged propensity); null "
        "only in the replay of an entry answered before propensities were served",
    )
    policy_probs: list[float] | None = Field(
        default=None, description="the policy's own distribution π over the pages"
    )
    exploration: str | None = Field(
        default=None, description="greedy, epsilon=E or softmax=T (the ingress's user_config)"
    )
    rtg_s: float = Field(description="return-to-go R̂_t at this entry (s)")
    session_idx: int = Field(description="index of this session in the day, from 0")
    policy: str = Field(description="glan or klan")


class SessionEndChecks(Body):
    """Base of every app's session-end body (``app_bodies``): the check of its ``page_seq``
    against its other fields, which JSON Schema cannot say."""

    def page_seq_conflict(self, landing: str) -> str | None:
        """Why ``page_seq`` does not fit the rest of the session (``n_switches``, ``exit_page``,
        the ``landing`` page the entry served), or None. Not a schema rule (JSON Schema cannot
        say it): the ingress answers 409 naming the fields."""
        fields: dict[str, Any] = self.__dict__  # the subclass's fields (pydantic keeps them here)
        seq: list[str] | None = fields.get("page_seq")
        n_switches: int = fields["n_switches"]
        exit_page: str = fields["exit_page"]
        if seq is None:
            return None
        if len(seq) != n_switches + 1:
            return f"page_seq has {len(seq)} pages but n_switches + 1 = {n_switches + 1}"
        if seq[-1] != exit_page:
            return f"page_seq ends with {seq[-1]!r}, not exit_page {exit_page!r}"
        if seq[0] != landing:
            return f"page_seq starts with {seq[0]!r}, not the landing page {landing!r}"
        return None


class SessionEnd(SessionEndChecks):
    """The session of the open entry ended: what the user did on each page."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"event_id": "s-42-0", "day": 42, "page_durations_s": [310.0, 80.0, 0.0],
                 "video_views": [5, 2, 0], "n_switches": 1, "usage_time": 420.0,
                 "exit_page": "explore"}
            ]
        }
    )  # fmt: skip
    event_id: str = EventId
    day: Int = Field(ge=0, le=MAX_DAY, description="the day this session belongs to")
    page_durations_s: list[Seconds] = _per_page("consumption time in this session (s)")
    video_views: list[Views] = _per_page("videos viewed in this session (count)")
    n_switches: Int = Field(ge=0, le=127, description="page switches in this session (count)")
    usage_time: Seconds = Field(
        description="session usage time (s), the page durations plus browsing: the naive reward"
    )
    exit_page: Page = Field(description="the page the user left the app from")
    page_seq: list[Page] | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="optional: the pages in the order visited, the landing page first and "
        "exit_page last (n_switches + 1 of them; otherwise 409); for the decision log",
    )
    watch_time_s: Seconds | None = Field(
        default=None, description="optional: video watch time in this session (s), for the log"
    )


OPTIONAL_LOG_FIELDS = ("page_seq", "watch_time_s")
"""Request fields added for the decision log: left out of a body's fingerprint when absent, so
an event sent before they existed still matches its repeat."""


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


class Health(BaseModel):
    status: str = Field(description="ok: this replica answers")
    policy: str = Field(description="glan or klan")
    state_store: str = Field(description="sqlite or redis")
    replica: str = Field(description="the answering ingress replica's id")


class Ready(BaseModel):
    status: str = Field(description="ready: the state store answers")
    state_store: str = Field(description="sqlite or redis")
