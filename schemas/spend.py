"""Marketing spend: one record per day, channel and campaign, from ad platforms or a CSV export.

>>> MarketingSpend.model_validate({"date": "2026-11-01", "channel": "paid_search", "campaign": "brand",
...                                "cost": 120.5, "impressions": 1000, "clicks": 40}).currency
'USD'
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat


class MarketingSpend(BaseModel):
    model_config = ConfigDict(extra="allow")

    date: date
    channel: Annotated[str, Field(min_length=1, max_length=64)]
    campaign: Annotated[str, Field(max_length=256)] = ""
    cost: Annotated[FiniteFloat, Field(ge=0, le=1e12)]
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    impressions: Annotated[int, Field(ge=0)] = 0
    clicks: Annotated[int, Field(ge=0)] = 0
