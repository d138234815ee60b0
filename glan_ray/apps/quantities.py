"""What an app specification's statistics t and context c can hold, and what each one means.

A profile feature x is whatever the app knows about a user (it arrives as a column). Statistics
and context are *computed* by the platform from the app's visit stream, so they come from a closed
vocabulary: each quantity here says its unit, whether it is one feature per page, and (for
statistics) whether it is taken over day windows. Feature names follow from the quantity:
``{quantity}_{w}d`` per window, with ``_{page}`` appended for a per-page quantity
(``page_dur_14d_explore``), and ``{quantity}_{page}`` for an unwindowed per-page statistic
(``last_exit_featured``).

A context value the platform cannot derive from the visits (the simulator's ``live_count``:
followed creators live at the entry) is an ``INPUT``: the client sends it with each app entry
and the event log carries it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    """One computed quantity: its unit, its shape and its meaning."""

    unit: str
    """Natural unit of the value before scaling: s, h, count, share, 0/1, or 1 (a pure number)."""
    per_page: bool
    """One feature per page (the spec's entry may restrict the pages)."""
    windowed: bool
    """Taken over day windows (statistics only): one feature per window."""
    meaning: str
    """What the value is, in words (docs/apps.md lists these)."""


STATISTICS: dict[str, Quantity] = {
    "usage": Quantity("s", False, True, "mean daily usage time over the user's last w days"),
    "sessions": Quantity("count", False, True, "mean daily app entries over the last w days"),
    "page_dur": Quantity(
        "s", True, True, "mean daily consumption of the page over the last w days"
    ),
    "page_entries": Quantity(
        "count", True, True, "mean daily landings on the page over the last w days"
    ),
    "page_share": Quantity(
        "share", True, True, "the page's share of the landings of the last w days (0 if none)"
    ),
    "last_exit": Quantity(
        "0/1", True, False, "1 for the page the user last exited the app from (today included)"
    ),
}
"""Statistics t: the user's history. A windowed statistic's windows end yesterday; days without a
visit count as 0."""

CONTEXT: dict[str, Quantity] = {
    "hour": Quantity("h", False, False, "local hour of the app entry, in [0, 24)"),
    "hour_sin": Quantity("1", False, False, "sin(2π·hour/24)"),
    "hour_cos": Quantity("1", False, False, "cos(2π·hour/24)"),
    "weekend": Quantity("0/1", False, False, "1 on Saturday and Sunday"),
    "entries_today": Quantity("count", False, False, "app entries earlier today"),
    "today_dur": Quantity("s", True, False, "consumption of the page so far today"),
    "today_usage": Quantity("s", False, False, "usage time so far today"),
    "prev_dropoff": Quantity("0/1", False, False, "1 if today's previous session was a drop-off"),
}
"""Real-time context c: the app entry and the day so far."""

INPUT = "input"
"""The context quantity of a value the client sends with each entry (named by the entry)."""

TRANSFORMS: dict[str, str] = {"none": "the value itself", "log1p": "ln(1 + value)"}
"""What a numeric profile feature's value goes through before its scale."""

REWARDS: dict[str, str] = {
    "usage_time": "the session's consumption summed over its pages (s)",
    "watch_time": "the session's video watch time (s)",
}
"""Session rewards an app can declare; usage time is the papers' (KLAN-IIT's reward is "the app
usage duration of the current session")."""

__all__ = ["CONTEXT", "INPUT", "REWARDS", "STATISTICS", "TRANSFORMS", "Quantity"]
