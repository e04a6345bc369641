"""Response-time SLA arithmetic: plain durations, and 'one business day' in business hours."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def add_business_time(
    start: datetime,
    amount: timedelta,
    *,
    tz: ZoneInfo,
    days: frozenset[int],
    opens: time,
    closes: time,
) -> datetime:
    """Return the instant when ``amount`` of business time has elapsed after ``start``.

    Business time runs only on ``days`` (0 = Monday) between ``opens`` and ``closes`` in
    ``tz``; a start outside business hours begins counting at the next opening.
    """
    if not days or closes <= opens:
        raise ValueError("business hours need at least one day and opens < closes")
    remaining = amount
    local = start.astimezone(tz)
    for _ in range(3660):  # ten years of days: a hard bound on the walk
        day = local.date()
        if day.weekday() in days:
            day_open = datetime.combine(day, opens, tz)
            day_close = datetime.combine(day, closes, tz)
            cursor = max(local, day_open)
            if cursor < day_close:
                available = day_close - cursor
                if remaining <= available:
                    return (cursor + remaining).astimezone(start.tzinfo)
                remaining -= available
        next_day = day + timedelta(days=1)
        local = datetime.combine(next_day, time(0, 0), tz)
    raise ValueError("business time could not be reached within ten years")


def business_day_length(opens: time, closes: time) -> timedelta:
    return datetime.combine(datetime.min.date(), closes) - datetime.combine(
        datetime.min.date(), opens
    )
