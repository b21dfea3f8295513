"""Zone-less local date-times (AlfaCRM and UIS both speak them) ⇄ UTC.

The integration's `timezone` (default Europe/Moscow) interprets them; the store keeps UTC ISO strings;
UIS receives local `YYYY-MM-DD hh:mm:ss`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

DEFAULT_TZ = "Europe/Moscow"
LOCAL_FORMAT = "%Y-%m-%d %H:%M:%S"


@lru_cache(maxsize=64)
def zone(name: str | None) -> ZoneInfo:
    return ZoneInfo(name or DEFAULT_TZ)


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_to_utc(value: datetime, tz: str | None) -> datetime:
    """A naive local date-time (or an aware one) → aware UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return value.astimezone(UTC)


def utc_to_local(value: datetime, tz: str | None) -> datetime:
    """Aware UTC → naive local date-time in the integration's zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone(tz)).replace(tzinfo=None)


def format_local(value: datetime, tz: str | None) -> str:
    """UTC (aware) → `YYYY-MM-DD hh:mm:ss` in the integration's zone, as UIS wants it."""
    return utc_to_local(value, tz).strftime(LOCAL_FORMAT)


def parse_local(text: str, tz: str | None) -> datetime:
    """`YYYY-MM-DD hh:mm:ss` (local) → aware UTC."""
    return local_to_utc(datetime.strptime(text.strip()[:19], LOCAL_FORMAT), tz)


def to_iso(value: datetime) -> str:
    """Aware UTC → ISO string for the store (second precision, `Z`)."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
