"""The proxy's own plain pages (400, 413, 502, 504): small, self-contained, never cached."""

from __future__ import annotations

from typing import Any

from shieldware.actions.pages import html_escape

_PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>"
         "<body><h1>{title}</h1><p>{message}</p><hr><p>shieldware proxy</p></body></html>\n")


def render_error(status: int, title: str, message: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = _PAGE.format(status=status, title=html_escape(title), message=html_escape(message)).encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
        # After a 413 part of the body may still be unread: closing is the only safe end.
        (b"connection", b"close"),
    ]
    return headers, body


async def error_page(send: Any, status: int, title: str, message: str) -> None:
    headers, body = render_error(status, title, message)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
