"""What support sees for one account: recent login attempts (decision log) and its windows (store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shieldware.decision_log import read_log
from shieldware.logfile import rotated_files
from shieldware.outcomes import normalise_account
from shieldware.store.base import Observation

HOUR = 3


def _attempt_from_decision(record: dict[str, Any]) -> dict[str, Any]:
    """A refused login (no outcome: the app never saw it) as an attempt row."""
    login = (record.get("extra") or {}).get("login") or {}
    return {"time": record.get("time"), "ref": record.get("ref"), "client_ip": record.get("client_ip"),
            "fingerprint": login.get("fingerprint"), "outcome": "refused", "verdict": record.get("verdict"),
            "action": record.get("action"), "reasons": [r.get("code") for r in record.get("reasons") or ()]}


def login_attempts(log_path: str | Path, account: str, limit: int = 50) -> list[dict[str, Any]]:
    """The account's last `limit` login attempts from a decision log (and the files rotated from
    it), oldest first."""
    account = normalise_account(account) or ""
    rows: list[dict[str, Any]] = []
    for record in read_log(log_path):
        if record.get("type") == "login":
            if record.get("account") == account:
                rows.append({k: record.get(k) for k in ("time", "ref", "client_ip", "fingerprint", "outcome",
                                                         "verdict", "reasons", "source", "takeover_suspected")})
        elif "type" not in record:
            login = (record.get("extra") or {}).get("login")
            if isinstance(login, dict) and login.get("account") == account and record.get("action") != "allow":
                rows.append(_attempt_from_decision(record))
        if len(rows) > 4 * limit:
            rows = rows[-limit:]
    rows.sort(key=lambda r: r.get("time") or 0)
    return rows[-limit:]


async def account_report(name: str, store: Any, log_path: str | Path | None, now: float,
                         limit: int = 50) -> dict[str, Any]:
    account = normalise_account(name) or ""
    report: dict[str, Any] = {"account": account, "attempts": [], "log": str(log_path) if log_path else None}
    if log_path and rotated_files(log_path):  # the log, or what was rotated from it
        report["attempts"] = login_attempts(log_path, account, limit)
    report["takeover_suspected"] = await store.get_record("ato.suspect", account, now)
    try:
        stats = (await store.observe([Observation("li.acct", account, count=0.0)], now))[0]
    except Exception as exc:  # a store without windows (or unreachable) still lets support read the log
        report["windows"] = {"error": str(exc)[:200]}
    else:
        report["windows"] = {"failures_last_hour": round(stats.count(HOUR), 1),
                             "distinct_ips": round(stats.distinct(0)),
                             "distinct_fingerprints": round(stats.distinct(1))}
    return report
