"""The standalone reverse proxy: ShieldMiddleware in front of a streaming forwarder (HTTP over
our own keep-alive pool, upstream.py; WebSockets over an aiohttp session, websocket.py)."""

from shieldware.proxy.app import ProxyApp, build_proxy_app, proxy_policy
from shieldware.proxy.forwarding import Forwarder
from shieldware.proxy.settings import ProxySettings

__all__ = ["Forwarder", "ProxyApp", "ProxySettings", "build_proxy_app", "proxy_policy"]
