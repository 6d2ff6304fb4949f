"""Acceptance: < 0.5 % of real browser UAs flagged as bots, ≥ 97 % of public crawler UAs caught —
on data the classifier was tuned on and, separately, on data it was not."""

from __future__ import annotations

import pytest

from shieldware.signals.useragent import UserAgentClassifier, classify_user_agent, default_classifier
from tests import ua_collections as uc


@pytest.mark.parametrize("name", uc.TUNING_BROWSER_FILES + uc.HELD_OUT_BROWSER_FILES)
def test_real_browsers_are_almost_never_flagged(name):
    user_agents = uc.browser_user_agents(name)
    assert len(user_agents) >= 40
    share, flagged = uc.flagged_share(classify_user_agent, user_agents)
    print(f"{name}: {len(flagged)}/{len(user_agents)} flagged ({share:.2%})")
    assert share < 0.005, flagged[:10]


def test_held_out_browsers_together_stay_under_half_a_percent():
    user_agents = [ua for name in uc.HELD_OUT_BROWSER_FILES for ua in uc.browser_user_agents(name)]
    share, flagged = uc.flagged_share(classify_user_agent, user_agents)
    assert len(user_agents) > 1000
    assert share < 0.005, flagged[:10]


def test_crawler_collection_is_caught_with_the_full_catalogue():
    user_agents = uc.crawler_instances(held_out=False) + uc.crawler_instances(held_out=True)
    share, _ = uc.flagged_share(classify_user_agent, user_agents)
    assert share >= 0.97


def test_held_out_crawlers_are_caught_without_their_patterns():
    classifier = uc.classifier_without_held_out()
    user_agents = uc.crawler_instances(held_out=True)
    assert len(user_agents) > 300
    share, flagged = uc.flagged_share(classifier.classify, user_agents)
    missed = [ua for ua in user_agents if ua not in set(flagged)]
    print(f"held-out crawler instances: caught {share:.2%}, missed {missed[:10]}")
    assert share >= 0.97


def test_ai_robots_are_caught_even_without_any_ai_list():
    classifier: UserAgentClassifier = uc.classifier_without_ai_lists()
    user_agents = uc.ai_robot_user_agents()
    share, _ = uc.flagged_share(classifier.classify, user_agents)
    assert share >= 0.97


def test_held_out_classifiers_do_not_flag_browsers_either():
    user_agents = [ua for name in uc.HELD_OUT_BROWSER_FILES for ua in uc.browser_user_agents(name)]
    for classifier in (
        uc.classifier_without_held_out(),
        uc.classifier_without_ai_lists(),
        default_classifier(),
    ):
        share, flagged = uc.flagged_share(classifier.classify, user_agents)
        assert share < 0.005, flagged[:10]


def test_ai_robots_get_an_ai_category_with_the_full_catalogue():
    names = uc.ai_robot_names()
    categories = {classify_user_agent(f"Mozilla/5.0 (compatible; {n}/1.0)").category for n in names}
    assert {"ai-crawler", "ai-assistant"} <= categories
