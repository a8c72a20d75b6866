"""The shop: products, prices, baskets, search terms, and the page furniture people click on.

Prices are USD list prices, log-normal around a per-category median; EUR and GBP shoppers see the same
products converted at fixed rates (``FX_TO_LOCAL``) and rounded to cents. A basket is built to hit an order
value drawn from the customer's Gamma-Gamma spend distribution, so realised order values track it closely.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from typing import Any


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SITE = "https://shop.example.com"
SITE_NAME = "Northwind Outfitters"
CURRENCY = {"US": "USD", "CA": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR"}
FX_TO_LOCAL = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79}

# category: (median price USD, brands, nouns)
_CATEGORIES: dict[str, tuple[float, tuple[str, ...], tuple[str, ...]]] = {
    "shoes": (85.0, ("Stride", "Trailborn", "Kinetik"), ("Running Shoe", "Sneaker", "Hiking Boot", "Loafer")),
    "apparel": (45.0, ("Northwind", "Loom & Co", "Basecamp"), ("Hoodie", "T-Shirt", "Rain Jacket", "Chinos")),
    "accessories": (30.0, ("Northwind", "Carry"), ("Backpack", "Beanie", "Wallet", "Sunglasses")),
    "home": (40.0, ("Hearth", "Nook"), ("Throw Blanket", "Mug Set", "Desk Lamp", "Candle")),
    "beauty": (22.0, ("Glow", "Pure Botanics"), ("Face Serum", "Lip Balm", "Shampoo", "Sunscreen")),
    "electronics": (120.0, ("Voltaic", "Sonix"), ("Headphones", "Smartwatch", "Speaker", "Power Bank")),
    "outdoor": (70.0, ("Trailborn", "Summit"), ("Tent", "Water Bottle", "Sleeping Bag", "Trekking Pole")),
    "kids": (25.0, ("Little Wind", "Playful"), ("Puzzle", "Plush Bear", "Rain Boots", "Building Set")),
}
CATEGORIES = tuple(_CATEGORIES)
_ADJECTIVES = _words("Classic Ultralight Everyday Pro Vintage Organic Waterproof Cozy Compact Premium Recycled Urban")
_COLOURS = _words("Black White Navy Olive Sand Charcoal Red Teal")
_QUERY_MODIFIERS = ("", "", "", "cheap ", "best ", "mens ", "womens ", "kids ", "black ", "sale ")
SELECTORS = (
    "button.add-to-cart",
    "a.nav-link",
    "#search-submit",
    "img.product-image",
    "div.size-selector > button",
    "a.breadcrumb",
    "button.wishlist",
    "div.reviews > a.more",
    "button#newsletter-signup",
    "a.footer-link",
)
DEAD_SELECTORS = ("div.promo-banner", "span.price", "img.hero", "div.rating-stars", "p.shipping-note")
RAGE_SELECTORS = ("button.apply-coupon", "button#place-order", "div.size-selector > button", "a.next-page")
JS_ERRORS = (
    ("TypeError: Cannot read properties of undefined (reading 'price')", "/static/js/product.4f2a.js"),
    ("ReferenceError: gtag is not defined", "/static/js/analytics.js"),
    ("TypeError: Failed to fetch", "/static/js/cart.91bc.js"),
    ("ChunkLoadError: Loading chunk 742 failed.", "/static/js/runtime.0d1e.js"),
    ("SecurityError: The operation is insecure.", "/static/js/checkout.7ac3.js"),
)
CHECKOUT_FAILURES = ("payment_declined", "address_invalid", "payment_timeout", "out_of_stock")
FEEDBACK: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "positive": (
        (
            "Love the new collection, checkout was quick!",
            "Great prices and fast shipping, thanks.",
            "Found exactly what I needed, super easy.",
            "The size guide was really helpful.",
            "Smooth experience, will shop again.",
        ),
        (4, 5),
    ),
    "neutral": (
        (
            "Would be nice to filter by colour.",
            "Okay selection, a bit pricey.",
            "Shipping options could be clearer.",
            "Just browsing for now.",
        ),
        (3,),
    ),
    "negative": (
        (
            "The coupon code does not work, very frustrating.",
            "Page keeps freezing when I try to pay.",
            "Checkout failed twice, giving up.",
            "Search results are useless, nothing relevant.",
            "Site is so slow on my phone.",
        ),
        (1, 2),
    ),
}


@dataclass(frozen=True, slots=True)
class Product:
    """One catalogue item; ``spec`` holds the Segment product fields per currency (price localised)."""

    product_id: str
    sku: str
    name: str
    brand: str
    category: str
    slug: str
    price_usd: float
    spec: dict[str, dict[str, Any]] = field(hash=False, compare=False)

    def price(self, currency: str) -> float:
        """List price in the currency, rounded to cents."""
        return float(self.spec[currency]["price"])


@dataclass(frozen=True, slots=True)
class Catalog:
    """All products, by category and sorted by price (for building baskets of a target value)."""

    products: tuple[Product, ...]
    by_category: dict[str, tuple[Product, ...]]
    by_price: tuple[Product, ...]
    prices: tuple[float, ...]
    queries: dict[str, tuple[str, ...]]

    def basket(self, rng: random.Random, target_usd: float) -> list[tuple[Product, int]]:
        """Products and quantities whose USD subtotal lands near ``target_usd``."""
        k = max(1, min(5, round(target_usd / 70.0 + rng.gauss(0.0, 0.5))))
        per_item = target_usd / k
        items: dict[str, tuple[Product, int]] = {}
        n = len(self.by_price)
        for _ in range(k):
            quantity = 2 if per_item < 30 and rng.random() < 0.25 else 1
            i = bisect.bisect_left(self.prices, per_item / quantity) + rng.randint(-2, 2)
            product = self.by_price[min(max(i, 0), n - 1)]
            old = items.get(product.product_id)
            items[product.product_id] = (product, quantity + (old[1] if old else 0))
        return list(items.values())


def build_catalog(rng: random.Random, *, per_category: int = 30) -> Catalog:
    """A deterministic catalogue of ``per_category`` products in each of the eight categories."""
    products: list[Product] = []
    by_category: dict[str, tuple[Product, ...]] = {}
    queries: dict[str, tuple[str, ...]] = {}
    for c, (category, (median, brands, nouns)) in enumerate(_CATEGORIES.items()):
        items = []
        for i in range(per_category):
            noun = nouns[i % len(nouns)]
            name = f"{rng.choice(_ADJECTIVES)} {noun} - {rng.choice(_COLOURS)}"
            price = round(math.exp(math.log(median) + rng.gauss(0.0, 0.55)), 0) - 0.01
            price = max(price, 4.99)
            number = c * 1000 + i + 1
            base = {
                "product_id": f"prod_{number:05d}",
                "sku": f"{category[:3].upper()}-{number:05d}-{rng.randint(10, 99)}",
                "category": category,
                "name": name,
                "brand": rng.choice(brands),
            }
            spec = {cur: {**base, "price": round(price * rate, 2)} for cur, rate in FX_TO_LOCAL.items()}
            slug = f"{name.lower().replace(' - ', '-').replace(' ', '-')}-{number}"
            items.append(Product(base["product_id"], base["sku"], name, base["brand"], category, slug, price, spec))
        by_category[category] = tuple(items)
        products.extend(items)
        queries[category] = (
            *(f"{mod}{noun.lower()}" for noun in nouns for mod in _QUERY_MODIFIERS[: 3 + len(noun) % 4]),
            category,
        )
    by_price = tuple(sorted(products, key=lambda p: (p.price_usd, p.product_id)))
    return Catalog(
        products=tuple(products),
        by_category=by_category,
        by_price=by_price,
        prices=tuple(p.price_usd for p in by_price),
        queries=queries,
    )
