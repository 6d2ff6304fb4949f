"""The shipped bot catalogue (fingerprints/bots.json) compiled into one multi-pattern matcher."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

from shieldware.datafiles import load_json

try:  # RE2 matches ~1,700 patterns in one linear pass; Python's re would try each in turn.
    import re2
except ImportError:  # pragma: no cover - re2 is a declared dependency; this keeps a broken install working
    re2 = None


@dataclass(frozen=True, slots=True)
class BotEntry:
    name: str
    pattern: str
    category: str
    operator: str = ""
    origin: str = ""


class BotCatalogue:
    """Answers "which known bot or tool does this user agent name?" with one automaton pass.

    All patterns go into a single RE2 set (a DFA over every pattern at once), which returns the
    indices of the patterns that match; only then is the winning entry chosen. Entries earlier in
    the list win (the curated tool list comes first), then the longest pattern (the most specific).
    """

    def __init__(self, entries: Sequence[BotEntry]) -> None:
        self.entries = tuple(entries)
        self._matcher = _compile(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, user_agent: str) -> BotEntry | None:
        hits = self._matcher(user_agent)
        if not hits:
            return None
        best = min(
            hits, key=lambda i: (self.entries[i].origin != "curated", -len(self.entries[i].pattern), i)
        )
        return self.entries[best]

    def without(self, names: Iterable[str]) -> BotCatalogue:
        """A catalogue lacking some entries: used to measure detection on bots we did not list."""
        dropped = set(names)
        return BotCatalogue([e for e in self.entries if e.name not in dropped])


def _compile(entries: Sequence[BotEntry]):
    if re2 is not None:
        options = re2.Options()
        options.max_mem = 256 << 20
        automaton = re2.Set.SearchSet(options)
        for entry in entries:
            automaton.Add(entry.pattern)
        automaton.Compile()
        return lambda text: automaton.Match(text)
    # Fallback without RE2: one combined Python regex with a named group per entry (slower, same answers
    # for the first hit only, which is still a correct classification).
    combined = re.compile("|".join(f"(?P<b{i}>{e.pattern})" for i, e in enumerate(entries)))

    def first_hit(text: str) -> list[int]:
        found = combined.search(text)
        return [int(found.lastgroup[1:])] if found is not None else []

    return first_hit


def entries_from_json(document: dict) -> list[BotEntry]:
    return [
        BotEntry(e["name"], e["pattern"], e["category"], e.get("operator", ""), e.get("origin", ""))
        for e in document["entries"]
    ]


@cache
def shipped_catalogue() -> BotCatalogue:
    """The catalogue built from the packaged fingerprints/bots.json, compiled once per process."""
    return BotCatalogue(entries_from_json(load_json("fingerprints", "bots.json")))
