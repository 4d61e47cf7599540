"""Which experiment arm a customer is in: champion, holdout (control) or a challenger.

Assignment is a hash of the experiments' salt and the customer id mapped to [0, 1), so it is
sticky (the same customer always lands in the same arm, in every process, across restarts) and
needs no state. The unit interval is cut in a fixed order — the placement's holdout share
first, then each challenger's share in the order written, the champion taking the rest — so
growing a challenger's share moves customers into it only from the champion.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from engine.rules.schema import Experiments

CHAMPION = "champion"
HOLDOUT = "holdout"


@dataclass(frozen=True, slots=True)
class Arm:
    name: str
    """`champion`, `holdout` or `challenger:<id>`: what decision logs and reports group by."""
    rules: str | None = None
    """A challenger's rule-set directory (relative to the rules directory)."""
    model: str | None = None
    """A challenger's response model id."""
    random: bool = False
    """For the holdout: show a uniformly random eligible treatment instead of none."""


_CHAMPION = Arm(CHAMPION)  # frozen, so one instance serves every decision


def bucket(customer_id: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}\x00{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


def assign(customer_id: str, placement: str | None, experiments: Experiments) -> Arm:
    holdout = experiments.holdout_for(placement)
    if holdout.share <= 0.0 and not experiments.challengers:
        return _CHAMPION
    u = bucket(customer_id, experiments.salt)
    if u < holdout.share:
        return Arm(HOLDOUT, random=holdout.treatment == "random")
    edge = holdout.share
    for challenger in experiments.challengers:
        edge += challenger.share
        if u < edge:
            return Arm(f"challenger:{challenger.id}", rules=challenger.rules, model=challenger.model)
    return _CHAMPION
