"""The demo shop: a small Starlette store protected by shieldware, used by the README and the tests."""

from shieldware.demo.shop import build_demo_app, build_shop

__all__ = ["build_demo_app", "build_shop"]
