"""A second opinion on an alert: the answer model says yes or no on the evidence that matched.

For a watch written as a condition that takes judgement ("someone is injured", "the home team
scores"), similarity alone fires on anything about the topic. A watch with ``verify`` asks the
configured answer model, once per alert, whether the matched evidence shows the condition; a clear
"no" drops the alert, a clear "yes" marks it ``verified``, and an unclear or failed reply keeps it
unverified (a missed event costs a monitoring user more than one more alert to dismiss).
"""

from __future__ import annotations

import re

MAX_TOKENS = 4  # "YES", "NO" and a full stop

_SYSTEM = ("You check alerts for someone monitoring a broadcast. Reply with one word: YES if the evidence "
           "shows that the condition holds, NO if it does not.")


def verify_messages(condition: str, modality: str, text: str) -> list[dict]:
    """Chat messages asking whether ``text`` (what was said, shown or seen) shows ``condition``."""
    where = {"said": "Said", "shown": "Shown on screen", "seen": "Seen in the picture"}.get(modality, "Evidence")
    return [{"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"Condition: {condition}\n{where}: \"{text}\"\n"
                                        "Does this show that the condition holds? Answer YES or NO."}]


def verdict(reply: str) -> bool | None:
    """True for a reply that starts with yes, False for no, None for anything else."""
    first = re.findall(r"[a-z]+", (reply or "").lower())[:1]
    return {"yes": True, "no": False}.get(first[0]) if first else None
