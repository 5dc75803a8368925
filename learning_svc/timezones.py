"""What a time without a zone means: UTC unless a pipeline says its naive times are local (or a zone).

One rule for the service (LEARNING_SVC_NAIVE_TIMEZONE) and the client (`naive_timezone=`):
StableNew and most pipelines write naive UTC (`datetime.utcnow()`), which is the default.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class LocalTime(tzinfo):
    """This machine's local time with its daylight-saving rules (the `time` module's), as a tzinfo."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(seconds=-(_time.altzone if self._dst(dt) else _time.timezone))

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(seconds=_time.timezone - _time.altzone) if self._dst(dt) else timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return _time.tzname[self._dst(dt)]

    @staticmethod
    def _dst(dt: datetime | None) -> bool:
        if dt is None or not _time.daylight:
            return False
        fields = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.weekday(), 0, -1)
        return _time.localtime(_time.mktime(fields)).tm_isdst > 0

    def __repr__(self) -> str:
        return "LocalTime()"


def naive_timezone(name: str | None) -> tzinfo:
    """ "UTC" (default), "local", or an IANA zone name such as "America/Chicago"; ValueError otherwise."""
    if not name or name.strip().upper() == "UTC":
        return UTC
    if name.strip().lower() == "local":
        return LocalTime()
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use UTC, local or an IANA name such as Europe/Berlin") from None
