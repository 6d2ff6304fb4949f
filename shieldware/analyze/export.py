"""Machine-readable outputs of an analysis: JSON and CSV of flagged clients, and blocklists to act on them."""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import json
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import yaml

from shieldware.analyze.findings import AnalysisResult, ClientFinding

BLOCKLIST_FORMATS = ("nginx", "ipset", "plain", "policy")
IPSET_NAME = "shieldware-bots"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z") if t else ""


def selected(findings: Iterable[ClientFinding], everyone: bool) -> list[ClientFinding]:
    return [f for f in findings if everyone or f.flagged]


def report_document(result: AnalysisResult, everyone: bool = False) -> dict[str, Any]:
    stats = result.stats
    return {
        "generator": "shieldware analyze",
        "sources": result.sources,
        "format": result.format_name,
        "lines": stats.lines,
        "malformed": stats.malformed,
        "malformed_samples": stats.samples,
        "damaged_sources": stats.damaged,
        "first_time": _iso(result.first_time),
        "last_time": _iso(result.last_time),
        "requests_by_category": result.requests_by_category,
        "ips_by_category": result.ips_by_category,
        "clients_by_category": result.clients_by_category,
        "people_not_listed": result.humans_not_listed,
        "ips": [f.as_record() for f in selected(result.ips, everyone)],
        "clients": [f.as_record() for f in selected(result.clients, everyone)],
        "bot_paths": [{"path": p, "requests": n} for p, n in result.bot_paths],
        "walks": [{**walk, "first_seen": _iso(walk["first_seen"]), "last_seen": _iso(walk["last_seen"])}
                  for walk in result.walks],
    }


def write_json(result: AnalysisResult, path: str | Path, everyone: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report_document(result, everyone), handle, indent=1, ensure_ascii=False, default=str)
        handle.write("\n")


CSV_COLUMNS = (
    "level",
    "ip",
    "user_agent",
    "category",
    "verdict",
    "bot_score",
    "requests",
    "pages",
    "assets",
    "route_group",
    "ua_category",
    "ua_name",
    "reasons",
    "first_seen",
    "last_seen",
)


def write_csv(result: AnalysisResult, path: str | Path, everyone: bool = False) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for level, findings in (("ip", result.ips), ("ip+ua", result.clients)):
            for f in selected(findings, everyone):
                writer.writerow(
                    (
                        level,
                        f.ip,
                        f.user_agent or "",
                        f.category,
                        f.verdict,
                        f"{f.bot_score:.1f}",
                        f.requests,
                        f.pages,
                        f.assets,
                        f.route_group,
                        f.ua_category,
                        f.ua_name,
                        ";".join(f.reason_codes),
                        _iso(f.first_seen),
                        _iso(f.last_seen),
                    )
                )


def blocklist_entries(result: AnalysisResult, include_suspicious: bool = False) -> list[ClientFinding]:
    """Addresses to block: bad bots (and suspicious clients if asked); never a verified crawler."""
    wanted = {"bad-bot", "suspicious"} if include_suspicious else {"bad-bot"}
    entries = []
    for finding in result.ips:
        if finding.category not in wanted:
            continue
        try:
            ipaddress.ip_address(finding.ip)
        except ValueError:
            continue  # a log's "address" that is not one (a hostname) cannot go in a blocklist
        entries.append(finding)
    return entries


def _comment(finding: ClientFinding) -> str:
    return f"{finding.category} score {finding.bot_score:.0f}: {', '.join(finding.reason_codes[:4])}"


def write_blocklist(
    result: AnalysisResult, path: str | Path, fmt: str, include_suspicious: bool = False
) -> int:
    """Write the blocklist; returns how many addresses it holds."""
    if fmt not in BLOCKLIST_FORMATS:
        raise ValueError(f"blocklist format {fmt!r}: expected one of {', '.join(BLOCKLIST_FORMATS)}")
    entries = blocklist_entries(result, include_suspicious)
    with open(path, "w", encoding="utf-8") as handle:
        _WRITERS[fmt](entries, handle)
    return len(entries)


def _nginx(entries: list[ClientFinding], out: IO[str]) -> None:
    out.write("# shieldware analyze blocklist: include it in an nginx http, server or location block\n")
    for f in entries:
        out.write(f"deny {f.ip};  # {_comment(f)}\n")


def _ipset(entries: list[ClientFinding], out: IO[str]) -> None:
    out.write("# shieldware analyze blocklist: load with `ipset restore -exist < FILE`\n")
    out.write(f"create {IPSET_NAME} hash:ip family inet -exist\n")
    out.write(f"create {IPSET_NAME}6 hash:ip family inet6 -exist\n")
    for f in entries:
        name = IPSET_NAME if ipaddress.ip_address(f.ip).version == 4 else IPSET_NAME + "6"
        out.write(f"add {name} {f.ip} -exist\n")


def _plain(entries: list[ClientFinding], out: IO[str]) -> None:
    for f in entries:
        out.write(f"{f.ip}\n")


def _policy(entries: list[ClientFinding], out: IO[str]) -> None:
    out.write("# shieldware policy rules from `shieldware analyze`: paste under `rules:` of your policy\n")
    for f in entries:
        out.write(f"# {f.ip}: {_comment(f)}\n")
    rules: list[dict[str, Any]] = []
    if entries:  # a rule with an empty `ip:` list would be rejected by the policy loader
        rules.append(
            {"name": "analyze-blocklist", "when": {"ip": [f.ip for f in entries]}, "action": "block"}
        )
    out.write(yaml.safe_dump({"rules": rules}, sort_keys=False))


_WRITERS = {"nginx": _nginx, "ipset": _ipset, "plain": _plain, "policy": _policy}
