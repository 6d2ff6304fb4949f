"""A plan's window observations for a shared store (Redis), spelled per request.

With the memory store the lane fills a plan's window rows and runs the kernel itself. A shared
store must be asked, and asked in its own terms: observations with their keys and items as text,
not the hashed rows the kernel reads. So at install the lane keeps, beside the plan, the
observations of the request it was drafted from, with the same per-request places cleared as
in the kernel's rows (the product id and its step, the session), and for a template the places
the client address is spelled in. Per request `RemoteRows.observations` fills those places the
way `_lane.c`'s fill_rows() fills the rows, and the middleware has the store observe them.
"""

from __future__ import annotations

from dataclasses import dataclass

from shieldware.fastlane.plan import LanePart
from shieldware.signals.traffic_keys import ip_prefix
from shieldware.store.base import Observation

ADDRESS, PREFIX = 0, 1  # recipe parts spelled from the client (lane.py's and the C file's PART_*)
MAX_SESSION = 128  # the session id's bytes the lane reads (the C file's MAX_SESSION)


@dataclass(frozen=True, slots=True)
class RemoteRows:
    """The observations of one plan, per-request places cleared (see the module docstring).

    `spelled`: for a template, each address row's key as literal parts around ADDRESS and PREFIX
    (None: the plan is its client's own); the items that are the client's address are the part's
    `address_items`. About a kilobyte for a plan of a client's own; the plans the lane makes from a
    template share the template's."""

    rows: tuple[Observation, ...]
    part: LanePart
    client_ip: str
    spelled: dict[int, tuple[str | int, ...]] | None = None

    @classmethod
    def of(cls, observations: list[Observation], part: LanePart, client_ip: str,
           spelled: dict[int, tuple[str | int, ...]] | None) -> RemoteRows:
        rows = list(observations)
        if part.pid_row >= 0:
            rows[part.pid_row] = _cleared_item(rows[part.pid_row])._replace(
                step=None, seen=rows[part.pid_row].seen & ~part.pid_seen)
        if part.step_row >= 0:
            row = rows[part.step_row]
            rows[part.step_row] = row._replace(step=None, seen=row.seen & ~part.step_seen)
        if part.session_row >= 0:
            row = _cleared_item(rows[part.session_row])
            rows[part.session_row] = row._replace(hits=row.hits & ~part.no_session_hits)
        return cls(tuple(rows), part, client_ip, spelled)

    def observations(self, client_ip: str, pid: int, session: bytes) -> list[Observation]:
        """This request's observations: the plan's, spelled for `client_ip`, with its product id
        (-1: none) and session id (b"": none)."""
        rows = list(self.rows) if client_ip == self.client_ip else self._for_address(client_ip)
        part = self.part
        if pid >= 0:
            if part.pid_row >= 0:
                row = rows[part.pid_row]
                rows[part.pid_row] = _with_item(row, str(pid))._replace(step=pid, seen=row.seen | part.pid_seen)
            if part.step_row >= 0:
                row = rows[part.step_row]
                rows[part.step_row] = row._replace(step=pid, seen=row.seen | part.step_seen)
        if part.session_row >= 0:
            row = rows[part.session_row]
            if session:
                rows[part.session_row] = _with_item(row, session[:MAX_SESSION].decode("ascii"))
            else:
                rows[part.session_row] = row._replace(hits=row.hits | part.no_session_hits)
        return rows

    def _for_address(self, client_ip: str) -> list[Observation]:
        """The rows of a template's plan for another plain address (as the C file's instantiate())."""
        if self.spelled is None:
            raise ValueError(f"the plan for {self.client_ip} is its own, not a template for {client_ip}")
        prefix = ip_prefix(client_ip)
        rows = list(self.rows)
        for row, parts in self.spelled.items():
            key = "".join(client_ip if p == ADDRESS else prefix if p == PREFIX else p for p in parts)
            rows[row] = rows[row]._replace(key=key)
        for row, sketch in self.part.address_items:
            items = list(rows[row].distinct)
            items[sketch] = client_ip
            rows[row] = rows[row]._replace(distinct=tuple(items))
        return rows


def _cleared_item(row: Observation) -> Observation:
    """The row with its first item (the per-request one) taken out."""
    return _with_item(row, None)


def _with_item(row: Observation, item: str | None) -> Observation:
    items = list(row.distinct) or [None]
    items[0] = item
    return row._replace(distinct=tuple(items))
