"""Refusal pages as templates split once into parts, so filling one in is a join.

A refused request is answered with a page (block, challenge), and a flood is answered with
thousands a second: serving a refusal must not cost more than serving the shop's page would.
`string.Template.substitute` runs a regex and a callback per hole on every call and leaves a
20 KB string to encode; here the page is split into literal parts (kept as UTF-8 bytes) and
holes once, the holes that never change for a verdict or a language are bound once, and each
request only encodes and joins what is its own (reference, token, nonce).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from string import Template


class PageTemplate:
    """`$name` holes (string.Template's syntax, `$$` for a dollar) in a page of literal text."""

    __slots__ = ("_parts", "holes")

    def __init__(self, parts: tuple[bytes | str, ...]) -> None:
        self._parts = parts  # bytes: literal text, already encoded; str: the name of a hole
        self.holes = frozenset(p for p in parts if isinstance(p, str))

    @classmethod
    def parse(cls, text: str) -> PageTemplate:
        parts: list[bytes | str] = []
        at = 0
        for match in Template.pattern.finditer(text):
            parts.append(text[at:match.start()].encode())
            at = match.end()
            name = match.group("named") or match.group("braced")
            if name:
                parts.append(name)
            elif match.group("escaped") is not None:
                parts.append(b"$")
            else:
                line = text.count("\n", 0, match.start()) + 1
                raise ValueError(f"a lone '$' in the page template at line {line} (write $$ for a dollar)")
        parts.append(text[at:].encode())
        return cls(_merged(parts))

    def bind(self, **values: str) -> PageTemplate:
        """The template with these holes filled in for good (values already escaped as they must be)."""
        unknown = set(values) - self.holes
        if unknown:
            raise KeyError(f"the template has no hole named {sorted(unknown)}")
        return PageTemplate(_merged([values[p].encode() if isinstance(p, str) and p in values else p
                                     for p in self._parts]))

    def fill(self, **values: str) -> bytes:
        """The page as UTF-8 bytes; every remaining hole must be given (KeyError names a missing one)."""
        missing = self.holes - values.keys()
        if missing:
            raise KeyError(f"the template's holes {sorted(missing)} were not filled")
        return b"".join(p if p.__class__ is bytes else values[p].encode() for p in self._parts)


def _merged(parts: list[bytes | str]) -> tuple[bytes | str, ...]:
    """Adjacent literal parts as one, empty ones dropped: the fewer parts, the cheaper the join."""
    merged: list[bytes | str] = []
    for part in parts:
        if isinstance(part, bytes):
            if not part:
                continue
            if merged and isinstance(merged[-1], bytes):
                merged[-1] += part
                continue
        merged.append(part)
    return tuple(merged)


@lru_cache(maxsize=8)
def template(name: str) -> PageTemplate:
    """A page of shieldware/web/, parsed once per process."""
    return PageTemplate.parse(resources.files("shieldware.web").joinpath(name).read_text(encoding="utf-8"))
