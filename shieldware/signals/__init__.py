"""Signal families: each module turns RequestFacts (and window state) into Evidence."""

from __future__ import annotations

from shieldware.signals.account import LoginSignal
from shieldware.signals.base import Inspection, Signal
from shieldware.signals.biometrics import BiometricsSignal
from shieldware.signals.clearance import ClearanceSignal
from shieldware.signals.crawlers import VerifiedCrawlerSignal
from shieldware.signals.headers import HeaderSignal
from shieldware.signals.network import NetworkSignal
from shieldware.signals.request import RequestSanitySignal
from shieldware.signals.shopabuse import ShopAbuseSignal
from shieldware.signals.switches import SwitchSignal
from shieldware.signals.traffic import TrafficSignal
from shieldware.signals.useragent import UserAgentSignal


def default_signals() -> list[Signal]:
    """The signals every engine runs unless told otherwise, in the order they run.

    Order matters only where a signal reads an attribute another publishes (the header and
    crawler checks read the user agent's claim; traffic reads the header fingerprint). The
    switch signal stays last: an operator's allow entry sets aside what the others demanded.
    """
    return [RequestSanitySignal(), UserAgentSignal(), NetworkSignal(), VerifiedCrawlerSignal(), HeaderSignal(),
            ClearanceSignal(), TrafficSignal(), LoginSignal(), ShopAbuseSignal(), BiometricsSignal(), SwitchSignal()]


__all__ = ["Inspection", "Signal", "default_signals"]
