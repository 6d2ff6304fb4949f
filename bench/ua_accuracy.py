"""Bench: how often does classify_user_agent flag real browsers, and how many public crawlers does it catch?

Prints one JSON object: per collection, tuning vs held-out. Held-out crawlers are judged by a
classifier built without their patterns (and AI robots by one without any AI list), so the
figure says what happens to a bot nobody has listed yet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldware.signals.useragent import classify_user_agent
from tests import ua_collections as uc


def share(classify, user_agents: list[str]) -> dict:
    rate, flagged = uc.flagged_share(classify, user_agents)
    return {"n": len(user_agents), "flagged": len(flagged), "share_flagged": round(rate, 5)}


def main() -> int:
    browsers = {
        name: share(classify_user_agent, uc.browser_user_agents(name))
        for name in uc.TUNING_BROWSER_FILES + uc.HELD_OUT_BROWSER_FILES
    }
    held_browsers = [ua for name in uc.HELD_OUT_BROWSER_FILES for ua in uc.browser_user_agents(name)]
    held_out = uc.classifier_without_held_out()
    no_ai = uc.classifier_without_ai_lists()
    result = {
        "question": "share of real browser UAs flagged as bots, share of public crawler UAs caught",
        "browsers_flagged": {
            "per_collection": browsers,
            "tuning": browsers[uc.TUNING_BROWSER_FILES[0]],
            "held_out": share(classify_user_agent, held_browsers),
            "held_out_by_catalogue_without_held_out_crawlers": share(held_out.classify, held_browsers),
        },
        "crawlers_caught": {
            "tuning_patterns_full_catalogue": share(classify_user_agent, uc.crawler_instances(False)),
            "held_out_patterns_full_catalogue": share(classify_user_agent, uc.crawler_instances(True)),
            "held_out_patterns_catalogue_without_them": share(held_out.classify, uc.crawler_instances(True)),
            "ai_robots_full_catalogue": share(classify_user_agent, uc.ai_robot_user_agents()),
            "ai_robots_catalogue_without_any_ai_list": share(no_ai.classify, uc.ai_robot_user_agents()),
        },
        "acceptance": {"browsers_flagged_below": 0.005, "crawlers_caught_at_least": 0.97},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
