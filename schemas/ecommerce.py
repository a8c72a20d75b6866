"""Typed properties of the Segment e-commerce spec events (V2).

https://segment.com/docs/connections/spec/ecommerce/v2/ . Only the fields revstream computes with are
typed; everything else in ``properties`` is kept as sent. Ids may arrive as numbers from some SDKs and are
read as strings; money must be a finite number.

>>> order = OrderCompleted.model_validate({"order_id": 7, "total": 30, "shipping": 5, "tax": 2.5})
>>> order.order_id, order.normalised_revenue, order.normalised_currency
('7', 22.5, 'USD')
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, FiniteFloat, model_validator


def _id_from_number(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


CommerceId = Annotated[str, BeforeValidator(_id_from_number), Field(min_length=1, max_length=256)]
Money = Annotated[FiniteFloat, Field(ge=-1e12, le=1e12)]
Currency = Annotated[str, Field(min_length=3, max_length=3)]


class CommerceProperties(BaseModel):
    model_config = ConfigDict(extra="allow")


class Product(CommerceProperties):
    product_id: CommerceId | None = None
    sku: str | None = None
    category: str | None = None
    name: str | None = None
    brand: str | None = None
    variant: str | None = None
    price: Money | None = None
    quantity: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    coupon: str | None = None
    position: int | None = None


class ProductEvent(Product):
    """``Product Viewed``, ``Product Added``, ``Product Removed``, ``Product Clicked``."""

    cart_id: CommerceId | None = None
    currency: Currency | None = None


class CartViewed(CommerceProperties):
    cart_id: CommerceId | None = None
    products: list[Product] = Field(default_factory=list)


class ProductsSearched(CommerceProperties):
    query: str | None = None


class CheckoutStarted(CommerceProperties):
    order_id: CommerceId | None = None
    value: Money | None = None
    revenue: Money | None = None
    shipping: Money | None = None
    tax: Money | None = None
    discount: Money | None = None
    coupon: str | None = None
    currency: Currency | None = None
    products: list[Product] = Field(default_factory=list)


class OrderCompleted(CommerceProperties):
    """An order; ``normalised_revenue`` is ``revenue``, else ``total - shipping - tax``."""

    order_id: CommerceId
    checkout_id: CommerceId | None = None
    total: Money | None = None
    subtotal: Money | None = None
    revenue: Money | None = None
    shipping: Money | None = None
    tax: Money | None = None
    discount: Money | None = None
    coupon: str | None = None
    currency: Currency | None = None
    products: list[Product] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_amount(self) -> OrderCompleted:
        if self.revenue is None and self.total is None:
            msg = "Order Completed needs revenue or total"
            raise ValueError(msg)
        return self

    @property
    def normalised_revenue(self) -> float:
        if self.revenue is not None:
            return self.revenue
        assert self.total is not None  # guaranteed by _has_amount
        return round(self.total - (self.shipping or 0.0) - (self.tax or 0.0), 6)

    @property
    def normalised_currency(self) -> str:
        return (self.currency or "USD").upper()


COMMERCE_PROPERTIES: dict[str, type[CommerceProperties]] = {
    "Products Searched": ProductsSearched,
    "Product Viewed": ProductEvent,
    "Product Clicked": ProductEvent,
    "Product Added": ProductEvent,
    "Product Removed": ProductEvent,
    "Cart Viewed": CartViewed,
    "Checkout Started": CheckoutStarted,
    "Order Completed": OrderCompleted,
}
