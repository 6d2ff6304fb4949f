"""Combine evidence into a bot score from 0 (human) to 100 (certainly automated)."""

from __future__ import annotations

from collections.abc import Iterable

from shieldware.evidence import Evidence


def bot_score(evidence: Iterable[Evidence]) -> float:
    """Noisy-OR of the positive weights, then the negative weights subtracted.

    Each positive weight w is read as "w % sure this is a bot"; independent findings combine as
    1 - prod(1 - w/100), so two weak hints add up without one strong finding being outvoted
    and without the total ever passing 100. Negative weights (a verified crawler, a fresh
    clearance) are trust that subtracts points after the combination.
    """
    human = 1.0
    trust = 0.0
    for item in evidence:
        w = item.weight
        if w > 0:
            human *= 1.0 - min(w, 100.0) / 100.0
        elif w < 0:
            trust += w
    # Rounded so that one finding of weight w scores exactly w (floating point would say w - 1e-15).
    score = round(100.0 * (1.0 - human) + trust, 2)
    if score < 0.0:
        return 0.0
    return 100.0 if score > 100.0 else score


def ranked(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    """Reasons ordered by how much they moved the score (largest magnitude first)."""
    return tuple(sorted(evidence, key=lambda e: -abs(e.weight)))
