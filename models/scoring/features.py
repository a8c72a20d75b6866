"""Windowed features per device: the current session's funnel and behaviour, and the device's history.

:class:`DeviceFeatures` is the state of one device (one ``anonymousId``), kept in a device-keyed table.
``update(row)`` folds one sessionised :class:`~schemas.records.EventRow` in and returns the snapshot, a
flat ``dict[str, float]`` every scoring model reads (propensity here; engagement, churn and bots in their
own modules). The session boundary is the sessionizer's: a new ``row.session_id`` starts a new session.

Snapshot keys (:data:`NUMERIC_FEATURES`, all floats, plus one-hot ``channel=<channel>`` and
``device=<device_type>`` = 1.0):

* current session, counted over its events so far: ``events``, ``page_views`` (page and screen calls),
  ``product_views``, ``product_list_views``, ``cart_adds``, ``cart_removes``, ``cart_value`` (price x
  quantity added minus removed, in the event's currency, floored at 0), ``checkout_starts``,
  ``checkout_failures``, ``searches``, ``clicks`` (Element Clicked), ``rage_clicks``, ``dead_clicks``,
  ``errors`` (any track event whose name ends in ``Error``), ``max_scroll_depth`` (0-100),
  ``engaged_seconds`` (sum of Page Engagement ``engagement_time_ms`` / 1000);
* current session, in event time: ``dwell_seconds`` (latest event - first event), ``events_per_minute``
  (events / max(dwell, 1 minute)), ``seconds_since_last_event`` (0 at the session's first event);
* device history *before this session*, fixed when the session starts: ``visits_1h``, ``visits_7d``,
  ``visits_30d`` (sessions started in that window before this one), ``orders_30d``, ``orders_total``,
  ``days_since_last_order`` and ``days_since_last_visit`` (365.0 when there is none; the last visit is the
  previous session's latest event), and ``cart_abandons_7d`` (earlier sessions of the last 7 days that
  added to the cart and did not order: the simulator's, and real shops', returning-cart signal).

History is "before this session" on purpose: an order in the current session must not show up in the
features that predict whether the current session orders. History is kept as short sorted lists of epoch
milliseconds bounded by ``max_history`` and by the 30-day horizon, never per event, so the state is a few
hundred bytes and an update costs a few microseconds (``benchmarks/scoring.py`` measures it).

Property numbers are client data: a price, depth or engagement time that is not a number, or is outside
+-1e12, counts as 0, so every snapshot value is finite (one infinite input would spoil a linear model).

Late events: an event of an *earlier* session (``row.session_id`` differs and its event time is before the
current session started: hours-late delivery) changes nothing and returns ``{}`` - there is nothing to
score. Out-of-order events within the current session are counted normally (the session's start and
latest time are the min and max of its event times).

>>> from schemas.records import EXAMPLE_ROW
>>> from dataclasses import replace
>>> from datetime import timedelta
>>> device = DeviceFeatures()
>>> page = replace(EXAMPLE_ROW, type="page", event="Product", order_id="", revenue=None)
>>> snap = device.update(page)
>>> snap["events"], snap["page_views"], snap["channel=email"], snap["device=desktop"]
(1.0, 1.0, 1.0, 1.0)
>>> added = replace(EXAMPLE_ROW, type="track", event="Product Added", order_id="", revenue=None,
...                 event_at=EXAMPLE_ROW.event_at + timedelta(seconds=30),
...                 properties='{"price": 20.0, "quantity": 2}')
>>> snap = device.update(added)
>>> snap["cart_adds"], snap["cart_value"], snap["dwell_seconds"], snap["seconds_since_last_event"]
(1.0, 40.0, 30.0, 30.0)
>>> DeviceFeatures.from_json(device.to_json()).to_json() == device.to_json()
True
"""

from __future__ import annotations

from typing import Any

import orjson

from models.times import epoch_ms
from schemas.records import EventRow

NUMERIC_FEATURES: tuple[str, ...] = (
    "events",
    "page_views",
    "product_views",
    "product_list_views",
    "cart_adds",
    "cart_removes",
    "cart_value",
    "checkout_starts",
    "checkout_failures",
    "searches",
    "dwell_seconds",
    "engaged_seconds",
    "max_scroll_depth",
    "clicks",
    "rage_clicks",
    "dead_clicks",
    "errors",
    "events_per_minute",
    "seconds_since_last_event",
    "visits_1h",
    "visits_7d",
    "visits_30d",
    "orders_30d",
    "orders_total",
    "days_since_last_order",
    "days_since_last_visit",
    "cart_abandons_7d",
)
"""The numeric snapshot keys, in a fixed order (the ClickHouse ``sessions`` columns use the same names)."""

NO_HISTORY_DAYS = 365.0
"""``days_since_last_order`` / ``days_since_last_visit`` of a device with no such event."""

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_HORIZON_MS = 30 * _DAY_MS
_COUNTED = {
    "Product Viewed": "product_views",
    "Product List Viewed": "product_list_views",
    "Checkout Started": "checkout_starts",
    "Checkout Failed": "checkout_failures",
    "Products Searched": "searches",
    "Element Clicked": "clicks",
    "Rage Click": "rage_clicks",
    "Dead Click": "dead_clicks",
}
_PAGE_TYPES = frozenset({"page", "screen"})
_CART_EVENTS = frozenset({"Product Added", "Product Removed"})


_LIMIT = 1e12  # as the commerce schema's money bound: no duration, depth or amount here is larger


def _number(value: object) -> float:
    # Properties are client data: a string, a missing field or an absurd number counts as 0, never as an
    # exception. Bounded so that sums stay finite: two Page Engagement events of 1e308 ms once made an
    # infinite snapshot value, and one infinite input turns a linear model's weights into NaN for good.
    if isinstance(value, int | float) and not isinstance(value, bool) and -_LIMIT <= value <= _LIMIT:
        return float(value)
    return 0.0


def _properties(row: EventRow) -> dict[str, Any]:
    try:
        data = orjson.loads(row.properties)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _count_since(times: list[int], since_ms: int) -> float:
    return float(sum(1 for t in times if t >= since_ms))


class DeviceFeatures:
    """One device's feature state: the current session's accumulator and bounded history windows.

    ``max_history`` bounds each history list (session starts, order times, abandoned carts), so
    ``visits_30d`` saturates at that number for a device that visits more often than that in 30 days.
    """

    __slots__ = (
        "abandon_ms",
        "cart_adds",
        "cart_removes",
        "cart_value",
        "channel_onehot",
        "counts",
        "device_onehot",
        "engaged_ms",
        "errors",
        "events",
        "history",
        "last_ms",
        "last_visit_ms",
        "max_history",
        "max_scroll",
        "order_ms",
        "ordered",
        "orders_total",
        "page_views",
        "session_id",
        "started_ms",
        "visit_ms",
    )

    def __init__(self, *, max_history: int = 64) -> None:
        self.max_history = max_history
        self.session_id = ""
        self.started_ms = 0
        self.last_ms = 0
        self.channel_onehot = ""
        self.device_onehot = ""
        self.events = 0
        self.page_views = 0
        self.cart_adds = 0
        self.cart_removes = 0
        self.cart_value = 0.0
        self.engaged_ms = 0.0
        self.max_scroll = 0.0
        self.errors = 0
        self.ordered = False
        self.counts: dict[str, int] = {}
        self.history: dict[str, float] = {}
        self.visit_ms: list[int] = []
        self.order_ms: list[int] = []
        self.abandon_ms: list[int] = []
        self.orders_total = 0
        self.last_visit_ms = -1

    def update(self, row: EventRow) -> dict[str, float]:
        """Fold ``row`` in and return the snapshot of its session (``{}`` for a late event of an earlier one)."""
        at = epoch_ms(row.event_at)
        if row.session_id != self.session_id:
            if self.session_id and at < self.started_ms:
                return {}
            self._start(row, at)
        previous = self.last_ms
        self.started_ms = min(self.started_ms, at)
        self.last_ms = max(self.last_ms, at)
        self.events += 1
        name = row.event
        if row.type in _PAGE_TYPES:
            self.page_views += 1
        elif row.type == "track":
            self._track(row, name, at)
        return self._snapshot(max(at - previous, 0) if self.events > 1 else 0)

    def _track(self, row: EventRow, name: str, at: int) -> None:
        counted = _COUNTED.get(name)
        if counted is not None:
            self.counts[counted] = self.counts.get(counted, 0) + 1
        elif name in _CART_EVENTS:
            props = _properties(row)
            value = max(_number(props.get("price")) * (_number(props.get("quantity")) or 1.0), 0.0)
            if name == "Product Added":
                self.cart_adds += 1
                self.cart_value += value
            else:
                self.cart_removes += 1
                self.cart_value = max(self.cart_value - value, 0.0)
        elif name == "Page Engagement":
            self.engaged_ms += max(_number(_properties(row).get("engagement_time_ms")), 0.0)
        elif name == "Scroll Depth Reached":
            props = _properties(row)
            depth = _number(props.get("depth", props.get("percent")))
            self.max_scroll = max(self.max_scroll, min(depth, 100.0))
        elif name == "Order Completed":
            self.ordered = True
            self.orders_total += 1
            self.order_ms.append(at)
            self.order_ms.sort()
            del self.order_ms[: -self.max_history]
        elif name.endswith("Error"):
            self.errors += 1

    def _start(self, row: EventRow, at: int) -> None:
        if self.session_id:
            self.last_visit_ms = self.last_ms
            if self.cart_adds and not self.ordered:
                self.abandon_ms.append(self.started_ms)
            self.visit_ms.append(self.started_ms)
        horizon = at - _HORIZON_MS
        self.visit_ms = [t for t in self.visit_ms if t >= horizon][-self.max_history :]
        self.abandon_ms = [t for t in self.abandon_ms if t >= at - 7 * _DAY_MS][-self.max_history :]
        orders = [t for t in self.order_ms if t < at]
        self.history = {
            "visits_1h": _count_since(self.visit_ms, at - _HOUR_MS),
            "visits_7d": _count_since(self.visit_ms, at - 7 * _DAY_MS),
            "visits_30d": float(len(self.visit_ms)),
            "orders_30d": _count_since(orders, horizon),
            "orders_total": float(self.orders_total),
            "days_since_last_order": (at - orders[-1]) / _DAY_MS if orders else NO_HISTORY_DAYS,
            "days_since_last_visit": (
                max(at - self.last_visit_ms, 0) / _DAY_MS if self.last_visit_ms >= 0 else NO_HISTORY_DAYS
            ),
            "cart_abandons_7d": float(len(self.abandon_ms)),
        }
        self.session_id = row.session_id
        self.started_ms = self.last_ms = at
        self.channel_onehot = f"channel={row.channel or 'unknown'}"
        self.device_onehot = f"device={row.device_type or 'unknown'}"
        self.events = self.page_views = self.cart_adds = self.cart_removes = self.errors = 0
        self.cart_value = self.engaged_ms = self.max_scroll = 0.0
        self.ordered = False
        self.counts = {}

    def _snapshot(self, since_last_ms: int) -> dict[str, float]:
        counts = self.counts
        dwell = (self.last_ms - self.started_ms) / 1000.0
        return {
            "events": float(self.events),
            "page_views": float(self.page_views),
            "product_views": float(counts.get("product_views", 0)),
            "product_list_views": float(counts.get("product_list_views", 0)),
            "cart_adds": float(self.cart_adds),
            "cart_removes": float(self.cart_removes),
            "cart_value": self.cart_value,
            "checkout_starts": float(counts.get("checkout_starts", 0)),
            "checkout_failures": float(counts.get("checkout_failures", 0)),
            "searches": float(counts.get("searches", 0)),
            "dwell_seconds": dwell,
            "engaged_seconds": self.engaged_ms / 1000.0,
            "max_scroll_depth": self.max_scroll,
            "clicks": float(counts.get("clicks", 0)),
            "rage_clicks": float(counts.get("rage_clicks", 0)),
            "dead_clicks": float(counts.get("dead_clicks", 0)),
            "errors": float(self.errors),
            "events_per_minute": self.events / max(dwell / 60.0, 1.0),
            "seconds_since_last_event": since_last_ms / 1000.0,
            **self.history,
            self.channel_onehot: 1.0,
            self.device_onehot: 1.0,
        }

    def to_json(self) -> bytes:
        """The state as compact JSON (for a changelogged table); :meth:`from_json` restores it exactly."""
        return orjson.dumps(
            {
                "max_history": self.max_history,
                "session": [self.session_id, self.started_ms, self.last_ms, self.channel_onehot, self.device_onehot],
                "n": [self.events, self.page_views, self.cart_adds, self.cart_removes, self.errors],
                "x": [self.cart_value, self.engaged_ms, self.max_scroll],
                "ordered": self.ordered,
                "counts": self.counts,
                "history": self.history,
                "visits": self.visit_ms,
                "orders": self.order_ms,
                "abandons": self.abandon_ms,
                "orders_total": self.orders_total,
                "last_visit_ms": self.last_visit_ms,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> DeviceFeatures:
        obj = orjson.loads(data)
        state = cls(max_history=obj["max_history"])
        state.session_id, state.started_ms, state.last_ms, state.channel_onehot, state.device_onehot = obj["session"]
        state.events, state.page_views, state.cart_adds, state.cart_removes, state.errors = obj["n"]
        state.cart_value, state.engaged_ms, state.max_scroll = obj["x"]
        state.ordered = obj["ordered"]
        state.counts = obj["counts"]
        state.history = obj["history"]
        state.visit_ms = obj["visits"]
        state.order_ms = obj["orders"]
        state.abandon_ms = obj["abandons"]
        state.orders_total = obj["orders_total"]
        state.last_visit_ms = obj["last_visit_ms"]
        return state
