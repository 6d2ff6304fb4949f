"""shieldware: anti-crawling and traffic security for online shops — middleware, proxy and log analyzer."""

from shieldware.decision import Decision, Verdict
from shieldware.engine import Engine
from shieldware.evidence import Evidence
from shieldware.facts import RequestFacts, facts_from_headers, facts_from_scope
from shieldware.middleware import ShieldMiddleware
from shieldware.policy import Policy, PolicyError, default_policy, load_policy
from shieldware.signals.useragent import UserAgentInfo, classify_user_agent

__version__ = "0.1.0"

__all__ = [
    "Decision",
    "Engine",
    "Evidence",
    "Policy",
    "PolicyError",
    "RequestFacts",
    "ShieldMiddleware",
    "UserAgentInfo",
    "Verdict",
    "classify_user_agent",
    "default_policy",
    "facts_from_headers",
    "facts_from_scope",
    "load_policy",
]
