"""Everything that crosses a boundary in revstream, as pydantic v2 models.

Inbound: Segment-spec events (:mod:`schemas.segment`) with typed e-commerce properties
(:mod:`schemas.ecommerce`) and marketing spend records (:mod:`schemas.spend`). Outbound: the rows and
messages we emit (:mod:`schemas.records`, :mod:`schemas.value`). ``SCHEMA_VERSION`` is stamped on every
emitted record; bump it when a field changes meaning.

Exceptions::

    RevstreamError (schemas.errors)
     ├── EventError        an inbound event or batch is invalid (carries the stage)
     ├── SinkError         a warehouse write failed (sinks.clickhouse)
     ├── ConfigError       a setting, path or DSN is unusable (streams.settings)
     ├── DeliveryError     the collector could not confirm delivery to Kafka (streams.delivery)
     ├── FitError          a customer-value model fit failed (models.value.fitting)
     ├── ErasureError      an erasure did not complete within its bound (sinks.erasure)
     ├── AttributionError  a conversion cannot be credited (models.attribution)
     └── AllocationError   budget limits that no allocation can meet (models.budget)
"""

from schemas.errors import ConfigError, EventError, RevstreamError, SinkError
from schemas.records import SCHEMA_VERSION, EventRow, FailedEvent
from schemas.segment import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    AliasEvent,
    Event,
    GroupEvent,
    IdentifyEvent,
    PageEvent,
    ScreenEvent,
    TrackEvent,
    parse_batch,
    parse_event,
)
from schemas.spend import MarketingSpend
from schemas.value import CustomerValue, HighValueAlert

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "AliasEvent",
    "ConfigError",
    "CustomerValue",
    "Event",
    "EventError",
    "EventRow",
    "FailedEvent",
    "GroupEvent",
    "HighValueAlert",
    "IdentifyEvent",
    "MarketingSpend",
    "PageEvent",
    "RevstreamError",
    "ScreenEvent",
    "SinkError",
    "TrackEvent",
    "parse_batch",
    "parse_event",
]
