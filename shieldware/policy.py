"""Policy: the YAML file that says how each route group of the shop is protected, as typed objects.

Loading validates everything and reports every mistake with the file, the field and what
was expected. Later features add their own settings through `register_section` and
`register_group_field`, so each feature owns and validates its own part of the file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from shieldware.decision import Verdict
from shieldware.evidence import Weights
from shieldware.facts import CLIENT_IP_HEADERS, client_ip_header
from shieldware.logfile import DEFAULT_KEEP
from shieldware.store import check_store_uri

RULE_ACTIONS = ("allow", "block", "challenge", "throttle", "weigh")
STORE_FAILURE_MODES = ("open", "challenge", "unavailable")
MODES = ("enforce", "monitor")
# A flood refused thousands of times a second writes as many decision lines: past this the log
# rotates (keeping DEFAULT_KEEP files), so the log cannot fill the disk.
DEFAULT_DECISION_LOG_MB = 100


class PolicyError(ValueError):
    """A policy file is wrong. `problems` lists every mistake as 'file: field: message'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class _Checker:
    """Collects problems while walking the YAML tree, so one run reports all of them."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, expected: str, got: Any) -> None:
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        self.problems.append(f"{where}: expected {expected}, got {shown}")

    def mapping(self, value: Any, where: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(where, "a mapping (key: value)", value)
            return {}
        return value

    def unknown_keys(self, value: dict, allowed: Iterable[str], where: str) -> None:
        allowed = sorted(allowed)
        for key in value:
            if key not in allowed:
                self.problems.append(f"{where}.{key}: unknown field; expected one of {', '.join(allowed)}")

    def string_list(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            self.fail(where, "a string or a list of strings", value)
            return ()
        return tuple(str(v) for v in value)

    def threshold(self, value: Any, where: str) -> float | None:
        if value is None or value is False:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            self.fail(where, "a number from 0 to 100, or null for never", value)
            return None
        return float(value)

    def networks(self, value: Any, where: str) -> tuple:
        nets = []
        for i, text in enumerate(self.string_list(value, where)):
            try:
                nets.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                self.fail(f"{where}[{i}]", "an IP address or CIDR like 203.0.113.0/24", text)
        return tuple(nets)


# ---- extension points -------------------------------------------------------------------------

SectionParser = Callable[[Any, str, _Checker], Any]
_SECTIONS: dict[str, tuple[SectionParser, Callable[[], Any]]] = {}
_GROUP_FIELDS: dict[str, tuple[SectionParser, Callable[[], Any]]] = {}
_ATTRIBUTES: dict[str, str] = {}
_RULE_EXPANDERS: list[Callable[[dict[str, Any]], list[tuple[str, Any]]]] = []


def register_section(name: str, parse: SectionParser, default: Callable[[], Any]) -> None:
    """A feature declares a top-level policy section it owns (e.g. `challenge:`)."""
    _SECTIONS[name] = (parse, default)


def register_group_field(name: str, parse: SectionParser, default: Callable[[], Any]) -> None:
    """A feature declares a per-route-group setting it owns (e.g. `limits:`)."""
    _GROUP_FIELDS[name] = (parse, default)


def register_rule_expander(expand: Callable[[dict[str, Any]], list[tuple[str, Any]]]) -> None:
    """A feature turns its parsed section (e.g. `presets:`) into rules, appended after the file's own.

    `expand(sections)` returns (where, raw rule mapping) pairs; they are validated like written rules.
    """
    _RULE_EXPANDERS.append(expand)


def register_attribute(name: str, meaning: str) -> None:
    """A signal declares an attribute it publishes, so rules may match on it (`ua.category`)."""
    _ATTRIBUTES[name] = meaning


def known_attributes() -> dict[str, str]:
    return dict(_ATTRIBUTES)


# ---- route groups -----------------------------------------------------------------------------


def glob_to_regex(pattern: str) -> str:
    """`/product/*` → prefix match, `*.css` → suffix match; `*` spans slashes, `?` is one char."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def compile_globs(patterns: Iterable[str], name: str | None = None) -> re.Pattern:
    """One regex for "the path matches any of these globs", as shops route a path: ASCII letters
    in either case and one more trailing slash. Express, ASP.NET, IIS and Spring serve `/LOGIN`
    and `/login/` as `/login`; a strict match would let a credential stuffer take its login out
    of the login group by spelling. On a shop that routes strictly those spellings are 404s, and
    grouping a 404 with its look-alike costs nothing. With `name`, alternative i is the named
    group f"{name}{i}" (`match.lastgroup` tells which glob matched first). The fast lane's C
    matches the same language (`any_glob` in _lane.c)."""
    parts = [glob_to_regex(p) if name is None else f"(?P<{name}{i}>{glob_to_regex(p)})"
             for i, p in enumerate(patterns)]
    if not parts:
        return _NOTHING
    return re.compile(f"(?:{'|'.join(parts)})/?\\Z", re.IGNORECASE | re.ASCII)


_NOTHING = re.compile(r"(?!x)x")


@dataclass(frozen=True, slots=True)
class RouteGroup:
    name: str
    paths: tuple[str, ...]
    methods: frozenset[str] | None = None
    challenge_above: float | None = 50.0
    block_above: float | None = 85.0
    skip_signals: frozenset[str] = frozenset()
    # What to do when the shared store cannot answer: serve anyway ("open"), challenge, or
    # answer 503 with Retry-After ("unavailable"). Login and checkout may prefer to fail closed.
    on_store_failure: str = "open"
    settings: dict[str, Any] = field(default_factory=dict)

    def verdict_for(self, score: float) -> Verdict:
        if self.block_above is not None and score >= self.block_above:
            return Verdict.BLOCK
        if self.challenge_above is not None and score >= self.challenge_above:
            return Verdict.CHALLENGE
        return Verdict.ALLOW

    def setting(self, name: str) -> Any:
        if name in self.settings:
            return self.settings[name]
        return _GROUP_FIELDS[name][1]()


_MAX_ROUTE_ANSWERS = 16384
_MAX_CACHED_PATH = 256


class RouteTable:
    """Finds the route group of a (method, path) with one regex match, cached per method.

    Answers are also kept per (method, path): shops serve the same paths again and again, and a
    dict lookup costs a tenth of the match. Bounded in entries and path length: a client
    inventing paths only resets it.
    """

    def __init__(self, groups: tuple[RouteGroup, ...], default_group: RouteGroup) -> None:
        self.groups = groups
        self.default_group = default_group
        self._by_method: dict[str, tuple[re.Pattern, list[RouteGroup]]] = {}
        self._answers: dict[tuple[str, str], RouteGroup] = {}

    def _compile(self, method: str) -> tuple[re.Pattern, list[RouteGroup]]:
        patterns, owners = [], []
        for group in self.groups:
            if group.methods is not None and method not in group.methods:
                continue
            for pattern in group.paths:
                patterns.append(pattern)
                owners.append(group)
        return compile_globs(patterns, name="g"), owners  # a group-less method matches nothing

    def group_for(self, method: str, path: str) -> RouteGroup:
        key = (method, path)
        group = self._answers.get(key)
        if group is None:
            group = self._match(method, path)
            if len(path) <= _MAX_CACHED_PATH:  # long paths would make the bounded cache large in bytes
                if len(self._answers) >= _MAX_ROUTE_ANSWERS:
                    self._answers.clear()
                self._answers[key] = group
        return group

    def _match(self, method: str, path: str) -> RouteGroup:
        compiled = self._by_method.get(method)
        if compiled is None:
            if len(self._by_method) > 32:  # arbitrary client methods must not grow this forever
                self._by_method.clear()
            compiled = self._by_method[method] = self._compile(method)
        regex, owners = compiled
        match = regex.match(path)
        if match is None:
            return self.default_group
        return owners[int(match.lastgroup[1:])]

    def by_name(self, name: str) -> RouteGroup | None:
        for group in self.groups:
            if group.name == name:
                return group
        return self.default_group if self.default_group.name == name else None


# ---- rules ------------------------------------------------------------------------------------

RULE_MATCH_KEYS = ("path", "method", "group", "ip", "header", "reason")


@dataclass(frozen=True, slots=True)
class Rule:
    """An explicit decision: when every condition in `when` holds, take `action`."""

    name: str
    action: str
    weight: float = 0.0
    paths: re.Pattern | None = None
    methods: frozenset[str] | None = None
    groups: frozenset[str] | None = None
    networks: tuple = ()
    headers: tuple[tuple[str, re.Pattern], ...] = ()
    reasons: frozenset[str] | None = None
    attributes: tuple[tuple[str, frozenset], ...] = ()
    path_globs: tuple[str, ...] = ()  # the globs `paths` was compiled from (the fast lane matches these)

    @property
    def needs_evidence(self) -> bool:
        return self.reasons is not None or bool(self.attributes)

    def matches(self, facts: Any, group: str, attrs: dict[str, Any], codes: Iterable[str],
                ignore_path: bool = False, ignore_address: bool = False) -> bool:
        """Whether every condition holds; with `ignore_path` / `ignore_address`, every condition
        but the path / the client address (the fast lane's plans ask both ways)."""
        if self.methods is not None and facts.method not in self.methods:
            return False
        if self.groups is not None and group not in self.groups:
            return False
        if not ignore_path and self.paths is not None and self.paths.match(facts.path) is None:
            return False
        if self.networks and not ignore_address and not self.names_address(facts.client_ip):
            return False
        for name, regex in self.headers:
            value = facts.header_map.get(name)
            if value is None or regex.search(value) is None:
                return False
        if self.reasons is not None and self.reasons.isdisjoint(codes):
            return False
        return all(_admits(wanted, attrs.get(name)) for name, wanted in self.attributes)

    def names_address(self, client_ip: str) -> bool:
        """The address is in one of the rule's `ip:` networks."""
        addr = _address(client_ip)
        return addr is not None and any(addr.version == n.version and addr in n for n in self.networks)

    def admits_attribute(self, name: str, value: Any) -> bool:
        """False when the rule has a condition on attribute `name` that `value` fails: the rule
        cannot match, whatever else the request holds (the engine skips it without matching)."""
        return all(_admits(wanted, value) for attribute, wanted in self.attributes if attribute == name)


@lru_cache(maxsize=16384)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client address parsed once: rules with an `ip:` condition test the same few thousand."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _admits(wanted: frozenset, value: Any) -> bool:
    """Does an attribute value satisfy a rule's list? Booleans and absence compare as text too
    (`verified_bot: true` in YAML is the string "true" in the list)."""
    if isinstance(value, bool) or value is None:
        return value in wanted or str(value).lower() in wanted
    return str(value) in wanted


def _parse_rule(raw: Any, where: str, check: _Checker) -> Rule | None:
    raw = check.mapping(raw, where)
    if not raw:
        return None
    check.unknown_keys(raw, ("name", "when", "action", "weight"), where)
    name = str(raw.get("name") or where)
    action = raw.get("action")
    if action not in RULE_ACTIONS:
        check.fail(f"{where}.action", "one of " + ", ".join(RULE_ACTIONS), action)
        return None
    weight = raw.get("weight", 0)
    if action == "weigh" and (isinstance(weight, bool) or not isinstance(weight, (int, float))):
        check.fail(f"{where}.weight", "a number of score points (negative lowers the score)", weight)
        weight = 0
    when = check.mapping(raw.get("when"), f"{where}.when")
    if not when:
        check.problems.append(f"{where}.when: expected at least one condition (a rule that matches everything "
                              "is almost always a mistake; use the group thresholds instead)")
    kwargs: dict[str, Any] = {}
    attributes = []
    for key, value in when.items():
        at = f"{where}.when.{key}"
        if key == "path":
            globs = check.string_list(value, at)
            kwargs["paths"] = compile_globs(globs)
            kwargs["path_globs"] = globs
        elif key == "method":
            kwargs["methods"] = frozenset(m.upper() for m in check.string_list(value, at))
        elif key == "group":
            kwargs["groups"] = frozenset(check.string_list(value, at))
        elif key == "ip":
            kwargs["networks"] = check.networks(value, at)
        elif key == "header":
            headers = []
            for header_name, pattern in check.mapping(value, at).items():
                try:
                    headers.append((str(header_name).lower(), re.compile(str(pattern))))
                except re.error as exc:
                    check.fail(f"{at}.{header_name}", f"a valid regular expression ({exc})", pattern)
            kwargs["headers"] = tuple(headers)
        elif key == "reason":
            kwargs["reasons"] = frozenset(check.string_list(value, at))
        elif key in _ATTRIBUTES:
            values = value if isinstance(value, list) else [value]
            attributes.append((key, frozenset(str(v).lower() if isinstance(v, bool) else str(v) for v in values)))
        else:
            expected = ", ".join(sorted((*RULE_MATCH_KEYS, *_ATTRIBUTES)))
            check.problems.append(f"{at}: unknown condition; expected one of {expected}")
    return Rule(name=name, action=action, weight=float(weight or 0), attributes=tuple(attributes), **kwargs)


# ---- the policy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    source: str
    mode: str
    route_table: RouteTable
    rules: tuple[Rule, ...]
    weights: Weights
    trusted_proxies: tuple = ()
    client_ip_header: str = "x-forwarded-for"  # where the trusted proxies write the client's address
    tls_fingerprint_header: str | None = None
    store_uri: str = "memory://"
    decision_log_path: str | None = None
    decision_log_all: bool = False
    decision_log_max_bytes: int = DEFAULT_DECISION_LOG_MB * 2**20
    decision_log_keep: int = DEFAULT_KEEP
    metrics_path: str | None = "/.shieldware/metrics"
    metrics_allow: tuple = ()
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> tuple[RouteGroup, ...]:
        return self.route_table.groups

    def group(self, name: str) -> RouteGroup | None:
        return self.route_table.by_name(name)

    def section(self, name: str) -> Any:
        if name in self.sections:
            return self.sections[name]
        return _SECTIONS[name][1]()


TOP_LEVEL_KEYS = (
    "version", "mode", "trusted_proxies", "client_ip_header", "tls_fingerprint_header", "store", "defaults",
    "weights", "decision_log", "metrics", "groups", "default_group", "rules",
)


def _parse_group(raw: Any, where: str, defaults: dict, check: _Checker) -> RouteGroup | None:
    raw = check.mapping(raw, where)
    core = ("name", "paths", "methods", "challenge_above", "block_above", "skip_signals", "on_store_failure")
    check.unknown_keys(raw, (*core, *_GROUP_FIELDS), where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        check.fail(f"{where}.name", "a group name such as 'checkout'", name)
        return None
    methods = check.string_list(raw.get("methods"), f"{where}.methods")
    on_store_failure = raw.get("on_store_failure", "open")
    if on_store_failure not in STORE_FAILURE_MODES:
        check.fail(f"{where}.on_store_failure", "one of " + ", ".join(STORE_FAILURE_MODES), on_store_failure)
        on_store_failure = "open"
    settings = {}
    for key, (parse, _default) in _GROUP_FIELDS.items():
        if key in raw:
            settings[key] = parse(raw[key], f"{where}.{key}", check)
    return RouteGroup(
        name=name,
        paths=check.string_list(raw.get("paths"), f"{where}.paths"),
        methods=frozenset(m.upper() for m in methods) if methods else None,
        challenge_above=check.threshold(raw.get("challenge_above", defaults.get("challenge_above", 50)),
                                        f"{where}.challenge_above"),
        block_above=check.threshold(raw.get("block_above", defaults.get("block_above", 85)), f"{where}.block_above"),
        skip_signals=frozenset(check.string_list(raw.get("skip_signals"), f"{where}.skip_signals")),
        on_store_failure=on_store_failure,
        settings=settings,
    )


def policy_from_mapping(raw: Any, source: str = "<policy>") -> Policy:
    """Validate a parsed YAML document into a Policy, or raise PolicyError listing every problem."""
    import shieldware.signals  # noqa: F401  (signals register the attributes rules may match on)

    check = _Checker()
    if not isinstance(raw, dict):
        raise PolicyError(source, [f"(top level): expected a mapping of policy fields, got {type(raw).__name__}"])
    check.unknown_keys(raw, (*TOP_LEVEL_KEYS, *_SECTIONS), "(top level)")
    version = raw.get("version", 1)
    if version != 1:
        check.fail("version", "1 (the only policy format so far)", version)
    mode = raw.get("mode", "enforce")
    if mode not in MODES:
        check.fail("mode", "enforce or monitor", mode)
    defaults = check.mapping(raw.get("defaults"), "defaults")
    check.unknown_keys(defaults, ("challenge_above", "block_above"), "defaults")
    for key in ("challenge_above", "block_above"):
        if key in defaults:
            check.threshold(defaults[key], f"defaults.{key}")
            if check.problems and check.problems[-1].startswith(f"defaults.{key}"):
                defaults = {k: v for k, v in defaults.items() if k != key}

    groups = []
    raw_groups = raw.get("groups") or []
    if not isinstance(raw_groups, list):
        check.fail("groups", "a list of route groups", raw_groups)
        raw_groups = []
    for i, raw_group in enumerate(raw_groups):
        group = _parse_group(raw_group, f"groups[{i}]", defaults, check)
        if group is not None:
            if any(g.name == group.name for g in groups):
                check.problems.append(f"groups[{i}].name: group {group.name!r} is defined twice")
            groups.append(group)
    default_name = raw.get("default_group", "browse")
    default_group = next((g for g in groups if g.name == default_name), None)
    if default_group is None:
        default_group = RouteGroup(name=str(default_name), paths=())

    rules = []
    raw_rules = raw.get("rules") or []
    if not isinstance(raw_rules, list):
        check.fail("rules", "a list of rules", raw_rules)
        raw_rules = []
    for i, raw_rule in enumerate(raw_rules):
        rule = _parse_rule(raw_rule, f"rules[{i}]", check)
        if rule is not None:
            known = {g.name for g in groups} | {default_group.name}
            for g in rule.groups or ():
                if g not in known:
                    check.problems.append(f"rules[{i}].when.group: unknown group {g!r}; expected one of "
                                          + ", ".join(sorted(known)))
            rules.append(rule)

    weights_raw = check.mapping(raw.get("weights"), "weights")
    weights = {}
    for code, value in weights_raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -100 <= value <= 100:
            check.fail(f"weights.{code}", "a number of points from -100 to 100", value)
        else:
            weights[str(code)] = float(value)

    log = check.mapping(raw.get("decision_log"), "decision_log")
    check.unknown_keys(log, ("path", "all", "max_mb", "keep"), "decision_log")
    max_mb = log.get("max_mb", DEFAULT_DECISION_LOG_MB)
    if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or max_mb < 0:
        check.fail("decision_log.max_mb", "megabytes before the log rotates (0: never)", max_mb)
        max_mb = DEFAULT_DECISION_LOG_MB
    keep = log.get("keep", DEFAULT_KEEP)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 1000:
        check.fail("decision_log.keep", "how many rotated files to keep, 1 to 1000", keep)
        keep = DEFAULT_KEEP
    metrics = raw.get("metrics", {})
    metrics = {"path": None} if metrics is False else check.mapping(metrics, "metrics")
    check.unknown_keys(metrics, ("path", "allow_from"), "metrics")
    ip_header = raw.get("client_ip_header", "x-forwarded-for")
    try:
        ip_header = client_ip_header(ip_header)
    except ValueError:
        check.fail("client_ip_header", f"the header your trusted proxies write the client's address into, "
                   f"one of {', '.join(CLIENT_IP_HEADERS)}", ip_header)
    tls_header = raw.get("tls_fingerprint_header")
    if tls_header is not None and not isinstance(tls_header, str):
        check.fail("tls_fingerprint_header", "a header name such as x-ja4", tls_header)
    store_uri = raw.get("store", "memory://")
    if not isinstance(store_uri, str) or "://" not in store_uri:
        check.fail("store", "a store URI such as memory:// or redis://127.0.0.1:6379/0", store_uri)
    else:
        try:
            check_store_uri(store_uri)
        except ValueError as exc:
            check.problems.append(f"store: {exc}")

    sections = {}
    for key, (parse, _default) in _SECTIONS.items():
        if key in raw:
            sections[key] = parse(raw[key], key, check)
    for expand in _RULE_EXPANDERS:
        for where, raw_rule in expand(sections):
            rule = _parse_rule(raw_rule, where, check)
            if rule is not None:
                rules.append(rule)

    trusted_proxies = check.networks(raw.get("trusted_proxies"), "trusted_proxies")
    metrics_allow = check.networks(metrics.get("allow_from", ["127.0.0.0/8", "::1/128"]), "metrics.allow_from")
    if check.problems:
        raise PolicyError(source, check.problems)
    return Policy(
        source=source,
        mode=mode,
        route_table=RouteTable(tuple(groups), default_group),
        rules=tuple(rules),
        weights=Weights(weights),
        trusted_proxies=trusted_proxies,
        client_ip_header=ip_header,
        tls_fingerprint_header=tls_header.lower() if isinstance(tls_header, str) else None,
        store_uri=store_uri,
        decision_log_path=log.get("path"),
        decision_log_all=bool(log.get("all", False)),
        decision_log_max_bytes=int(max_mb * 2**20),
        decision_log_keep=keep,
        metrics_path=metrics.get("path", "/.shieldware/metrics"),
        metrics_allow=metrics_allow,
        sections=sections,
    )


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises PolicyError (never a bare YAML traceback)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [f"(file): cannot be read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), [f"(file): is not UTF-8 text ({exc.reason} at byte {exc.start})"]) from exc
    return policy_from_text(text, str(path))


def parse_yaml(text: str) -> Any:
    """A YAML document's data. libyaml reads it when PyYAML was built with it, ten times faster
    (14 ms for the shipped policy here, read at start-up and on every reload); a document it refuses
    is read again by PyYAML's own parser, whose errors say more (the character found, the line
    quoted)."""
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # CSafeLoader: the safe loader, in C
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def policy_from_text(text: str, source: str = "<policy>") -> Policy:
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [f"{where}: not valid YAML: {problem}"]) from exc
    return policy_from_mapping(raw, source)


def default_policy_text() -> str:
    return resources.files("shieldware").joinpath("policies/default.yaml").read_text(encoding="utf-8")


def default_policy(**overrides: Any) -> Policy:
    """The shipped shop policy; `overrides` replace top-level fields (e.g. mode="monitor")."""
    raw = parse_yaml(default_policy_text())
    raw.update(overrides)
    return policy_from_mapping(raw, "<default policy>")
