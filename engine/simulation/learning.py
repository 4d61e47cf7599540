"""A synthetic population run through the real decision, feedback and learning path.

It answers "does the engine learn?" with known ground truth: customers come from segments with
fixed acceptance probabilities per offer, unknown to the engine. Each round the engine decides
(real rules, real Redis, the numba kernel, exploration), the simulated customer accepts with
the true probability, feedback goes through the service, and the learner worker learns from
the streams and publishes weights that serving installs — exactly as in production, with a
simulated clock so that non-responses turn into negatives.

The learned policy is then judged by its exact expected reward (its greedy choice per segment,
valued with the true probabilities) against the oracle (the best offer per segment) and against
the static prior policy (the offer the priors rank first, for everyone).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.clock import FixedClock
from engine.decision.pipeline import score, scoring_inputs
from engine.decision.service import DecisionService
from engine.domain import CustomerState, DecisionRequest, Feedback
from engine.learning.serving import ModelRegistry
from engine.learning.spec import load_model_specs
from engine.learning.worker import LearnerWorker
from engine.rules.registry import RuleRegistry
from engine.state.learning_store import LearningStore
from engine.state.redis_store import RedisStore

if TYPE_CHECKING:  # the client is only passed through to engine.state, which talks to Redis
    from redis import asyncio as aioredis


SEGMENTS = ("family", "young_adult", "business", "leisure")
OFFERS = ("kids_club", "festival_pass", "lounge_access", "spa_weekend")
# True acceptance probability of each offer (columns) for each segment (rows): every segment
# has a different best offer, and the priors (equal for all offers) cannot know which.
TRUE_P = np.array(
    [
        [0.30, 0.05, 0.04, 0.10],
        [0.04, 0.26, 0.06, 0.08],
        [0.03, 0.05, 0.32, 0.12],
        [0.08, 0.07, 0.10, 0.28],
    ]
)

RULES = """
fields:
  customer:
    segment: string
arbitration:
  limit: 1
  max_per_group: 1
treatments:
""" + "".join(
    f"""  - id: {offer}
    kind: offer
    channels: [web]
    group: {offer}
    value: 10
    prior: {{alpha: 1, beta: 9}}
"""
    for offer in OFFERS
)

MODEL = """
id: response
learner: logistic_regression
hyperparameters: {lr: 0.1, l2: 0.0, intercept_lr: 0.05}
hash_bits: 16
features:
  customer: [segment]
  treatment: [id]
  interactions:
    - [treatment.id, customer.segment]
reward:
  positive: {accept: 1.0}
  non_response_after_s: 60
evidence_threshold: 20
exploration:
  default: {policy: epsilon_greedy, epsilon: 0.1}
"""


@dataclass
class LearningRun:
    decisions: int
    accepted: int
    model_version: int
    learned_value: float
    oracle_value: float
    prior_value: float
    learned_choice: dict[str, str] = field(default_factory=dict)
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def share_of_oracle(self) -> float:
        return self.learned_value / self.oracle_value


def write_world(directory: Path) -> tuple[Path, Path]:
    rules, models = directory / "rules", directory / "models"
    rules.mkdir(parents=True, exist_ok=True)
    models.mkdir(parents=True, exist_ok=True)
    (rules / "offers.yaml").write_text(RULES)
    (models / "response.yaml").write_text(MODEL)
    return rules, models


def greedy_choice(registry: ModelRegistry, rules: RuleRegistry) -> dict[str, str]:
    """Per segment, the offer the engine now ranks first (the policy without exploration)."""
    model = registry.for_placement(None)
    treatments = rules.current.candidates("web", None)
    out = {}
    for segment in SEGMENTS:
        state = CustomerState("probe", profile={"segment": segment})
        request = DecisionRequest("probe", "web")
        s = score(scoring_inputs(treatments, [1.0] * len(treatments), model, state, request))
        out[segment] = treatments[int(np.argmax(s.priority))].id
    return out


def policy_value(choice: dict[str, str]) -> float:
    """Exact expected acceptance of a per-segment choice, segments equally likely."""
    return float(np.mean([TRUE_P[SEGMENTS.index(seg), OFFERS.index(offer)] for seg, offer in choice.items()]))


async def run_learning(
    client: aioredis.Redis,
    *,
    decisions: int = 20_000,
    customers: int = 2_000,
    seed: int = 1,
    learn_every: int = 200,
    workdir: Path | None = None,
    on_progress: Callable[[int, float], None] | None = None,
) -> LearningRun:
    """Run the population through the engine; the Redis database behind `client` is used as is."""
    with tempfile.TemporaryDirectory() as tmp:
        rules_dir, models_dir = write_world(workdir or Path(tmp))
        rules = RuleRegistry.from_directory(rules_dir)
        specs = load_model_specs(models_dir, customer_fields=rules.current.vocabulary.namespaces["customer"])
        registry = ModelRegistry(specs)
        clock = FixedClock(1_795_428_000_000)
        store = RedisStore(client, decision_ttl_s=7 * 86_400, dedup_ttl_s=86_400, recent_limit=10, stream_maxlen=10_000_000)
        try:
            await store.prepare()
            learning = LearningStore(client)
            rng = np.random.default_rng(seed)
            service = DecisionService(store, rules, clock, models=registry, rng=np.random.default_rng(seed + 1))
            worker = LearnerWorker(learning, specs[0], clock, consumer="simulation", snapshot_every_s=0.0, batch=5_000)
            await worker.restore()
            await store.seed_profiles([(f"sim-{i}", {"segment": SEGMENTS[i % len(SEGMENTS)]}) for i in range(customers)])
            prior_choice = greedy_choice(registry, rules)

            accepted = 0
            curve: list[tuple[int, float]] = []
            for n in range(1, decisions + 1):
                i = int(rng.integers(customers))
                segment = SEGMENTS.index(SEGMENTS[i % len(SEGMENTS)])
                decision = await service.decide(DecisionRequest(f"sim-{i}", "web"))
                for t in decision.treatments:
                    if rng.random() < TRUE_P[segment, OFFERS.index(t.id)]:
                        accepted += 1
                        await service.record_feedback(Feedback(f"fb-{n}-{t.id}", decision.decision_id, t.id, "accept"))
                clock.advance(seconds=1)
                if n % learn_every == 0:
                    while (await worker.step(block_ms=None)).entries:
                        pass
                    await registry.refresh(learning)
                    if n % (learn_every * 10) == 0:
                        value = policy_value(greedy_choice(registry, rules))
                        curve.append((n, value))
                        if on_progress is not None:
                            on_progress(n, value)
        finally:
            await store.aclose()
        learned = greedy_choice(registry, rules)
        return LearningRun(
            decisions=decisions,
            accepted=accepted,
            model_version=registry.versions()[specs[0].id],
            learned_value=policy_value(learned),
            oracle_value=float(TRUE_P.max(axis=1).mean()),
            prior_value=policy_value(prior_choice),
            learned_choice=learned,
            curve=curve,
        )
