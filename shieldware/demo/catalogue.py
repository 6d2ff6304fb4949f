"""The demo shop's made-up catalogue, users, coupons and cards (deterministic, no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass

_ADJECTIVES = ("Sturdy", "Cosy", "Swift", "Quiet", "Bright", "Classic", "Modern", "Rugged", "Tiny", "Grand")
_NOUNS = ("Teapot", "Backpack", "Lamp", "Kettle", "Notebook", "Umbrella", "Scarf", "Headphones", "Mug", "Chair")
_CATEGORIES = ("kitchen", "travel", "home", "office", "audio")


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    name: str
    category: str
    price_cents: int
    stock: int

    @property
    def price(self) -> str:
        return f"{self.price_cents / 100:.2f}"


def make_products(count: int = 1000, seed: int = 7) -> dict[int, Product]:
    rng = random.Random(seed)
    products = {}
    for pid in range(1, count + 1):
        name = f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {pid}"
        products[pid] = Product(pid, name, rng.choice(_CATEGORIES), rng.randrange(299, 19999), rng.randrange(0, 40))
    return products


PRODUCTS = make_products()

# Demo accounts. Passwords are plain here because this is a toy shop with made-up users;
# shieldware itself never sees or stores passwords.
USERS = {"alice": "wonderland", "bob": "builder", "carol": "singer", "dave": "diver", "erin": "explorer"}

COUPONS = {"WELCOME10": 10, "SPRING15": 15}

# Test card numbers: this one is accepted, every other number is declined.
GOOD_CARD = "4242424242424242"
