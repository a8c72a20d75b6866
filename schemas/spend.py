"""Marketing spend: one record per day, channel and campaign, from ad platforms or a CSV export.

>>> MarketingSpend.model_validate({"date": "2026-11-01", "channel": "paid_search", "campaign": "brand",
...                                "cost": 120.5, "impressions": 1000, "clicks": 40}).currency
'USD'
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from schemas.records import SCHEMA_VERSION


class MarketingSpend(BaseModel):
    """A spend record as it arrives (extra fields kept); ``row`` is its ``marketing_spend`` row."""

    model_config = ConfigDict(extra="allow")

    date: date
    channel: Annotated[str, Field(min_length=1, max_length=64)]
    campaign: Annotated[str, Field(max_length=256)] = ""
    cost: Annotated[FiniteFloat, Field(ge=0, le=1e12)]
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    impressions: Annotated[int, Field(ge=0)] = 0
    clicks: Annotated[int, Field(ge=0)] = 0


@dataclass(slots=True, kw_only=True)
class SpendRow:
    """A row of ``marketing_spend``: the record and where it came from (``file:line`` or topic coordinates)."""

    day: date
    channel: str
    campaign: str
    cost: float
    currency: str
    impressions: int
    clicks: int
    source: str
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def of(cls, record: MarketingSpend, *, source: str) -> SpendRow:
        return cls(
            day=record.date,
            channel=record.channel,
            campaign=record.campaign,
            cost=record.cost,
            currency=record.currency,
            impressions=record.impressions,
            clicks=record.clicks,
            source=source,
        )


SPEND_COLUMNS = tuple(f.name for f in fields(SpendRow))
