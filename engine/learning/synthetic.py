"""A bandit simulator with known ground truth, for checking that offline estimates are honest.

Real logs never reveal what a different policy would have earned, so estimator bias, variance
and interval coverage can only be measured where the truth is known. Here customers come from a
few segments, each (segment, action) pair has a fixed acceptance probability, and a logging
policy chooses with exactly recorded propensities; :meth:`Simulator.true_value` then gives any
target policy's exact expected reward per decision, to compare the estimates against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.errors import InvalidInput
from engine.learning.banditlog import LoggedRound
from engine.learning.ope import RewardModel, Target

__all__ = ["Simulator"]


@dataclass(frozen=True, eq=False)
class Simulator:
    """Segments x actions world: acceptance probabilities, action values, and a logging policy.

    ``reward_probs[s, a]`` is the chance a customer of segment ``s`` accepts action ``a``;
    accepting earns ``action_values[a]``. ``logging_probs[s, a]`` is the logging policy's
    probability of showing ``a`` to segment ``s``; every entry must be positive so that every
    target policy is identifiable from the log.
    """

    actions: tuple[str, ...]
    segments: tuple[str, ...]
    segment_probs: np.ndarray  # (S,)
    reward_probs: np.ndarray  # (S, K)
    logging_probs: np.ndarray  # (S, K)
    action_values: np.ndarray  # (K,)

    def __post_init__(self) -> None:
        s, k = len(self.segments), len(self.actions)
        if s == 0 or k == 0:
            raise InvalidInput("a simulator needs at least one segment and one action", field="segments")
        shapes = {
            "segment_probs": (self.segment_probs, (s,)),
            "reward_probs": (self.reward_probs, (s, k)),
            "logging_probs": (self.logging_probs, (s, k)),
            "action_values": (self.action_values, (k,)),
        }
        for name, (arr, shape) in shapes.items():
            if np.shape(arr) != shape:
                raise InvalidInput(f"{name} must have shape {shape}, got {np.shape(arr)}", field=name)
        if not np.isclose(self.segment_probs.sum(), 1.0) or np.any(self.segment_probs < 0):
            raise InvalidInput("segment_probs must be a probability distribution", field="segment_probs")
        if np.any((self.reward_probs < 0) | (self.reward_probs > 1)):
            raise InvalidInput("reward_probs must lie in [0, 1]", field="reward_probs")
        if np.any(self.logging_probs <= 0) or not np.allclose(self.logging_probs.sum(axis=1), 1.0):
            raise InvalidInput("logging_probs rows must be positive distributions", field="logging_probs")

    @classmethod
    def make(
        cls,
        *,
        n_actions: int = 5,
        n_segments: int = 3,
        logging: Literal["softmax", "epsilon_greedy"] = "softmax",
        temperature: float = 0.2,
        epsilon: float = 0.2,
        score_noise: float = 0.1,
        reward_range: tuple[float, float] = (0.05, 0.5),
        seed: int = 0,
    ) -> Simulator:
        """Draw a random world; the logging policy acts on noisy versions of the true rates.

        The noise is what makes logging imperfect, so a greedy policy on the true rates is a
        genuinely different (and better) target than the logging policy.
        """
        if n_actions < 1 or n_segments < 1:
            raise InvalidInput("n_actions and n_segments must be >= 1", field="n_actions")
        rng = np.random.default_rng(seed)
        segment_probs = rng.dirichlet(np.full(n_segments, 5.0))
        reward_probs = rng.uniform(reward_range[0], reward_range[1], size=(n_segments, n_actions))
        scores = reward_probs + rng.normal(0.0, score_noise, size=reward_probs.shape)
        if logging == "softmax":
            if temperature <= 0:
                raise InvalidInput(f"temperature must be > 0, got {temperature!r}", field="temperature")
            z = np.exp((scores - scores.max(axis=1, keepdims=True)) / temperature)
            logging_probs = z / z.sum(axis=1, keepdims=True)
        elif logging == "epsilon_greedy":
            if not (0 < epsilon <= 1):
                raise InvalidInput(f"epsilon must be in (0, 1], got {epsilon!r}", field="epsilon")
            greedy = np.zeros_like(scores)
            greedy[np.arange(n_segments), scores.argmax(axis=1)] = 1.0
            logging_probs = (1 - epsilon) * greedy + epsilon / n_actions
        else:
            raise InvalidInput(f"logging must be softmax or epsilon_greedy, got {logging!r}", field="logging")
        return cls(
            actions=tuple(f"a{i}" for i in range(n_actions)),
            segments=tuple(f"s{i}" for i in range(n_segments)),
            segment_probs=segment_probs,
            reward_probs=reward_probs,
            logging_probs=logging_probs,
            action_values=np.ones(n_actions),
        )

    # -----------------------------------------------------------------------------------------

    def context(self, segment: int) -> dict[str, Any]:
        return {"segment": self.segments[segment]}

    def _segment_of(self, context: Mapping[str, Any]) -> int:
        try:
            return self.segments.index(context["segment"])
        except (KeyError, ValueError):
            raise InvalidInput(f"context has no known segment: {dict(context)!r}", field="segment") from None

    def expected_reward(self, segment: int, action: str) -> float:
        k = self.actions.index(action)
        return float(self.reward_probs[segment, k] * self.action_values[k])

    def logging_policy(self) -> Target:
        """The logging policy as a target, e.g. to check that evaluating it reproduces the log's mean."""
        table = [dict(zip(self.actions, row.tolist(), strict=True)) for row in self.logging_probs]

        def target(context: Mapping[str, Any], actions: tuple[str, ...]) -> Mapping[str, float]:
            row = table[self._segment_of(context)]
            return {a: row[a] for a in actions if a in row}

        return target

    def reward_model(self) -> RewardModel:
        """The true expected reward: the best reward model doubly robust could be given."""
        table = self.reward_probs * self.action_values[None, :]
        col = {a: i for i, a in enumerate(self.actions)}

        def q(context: Mapping[str, Any], action: str) -> float:
            return float(table[self._segment_of(context), col[action]])

        return q

    def simulate(self, n: int, *, seed: int | np.random.Generator = 0) -> list[LoggedRound]:
        """Log ``n`` decisions of the logging policy, with exact propensities and eligible actions."""
        if n < 0:
            raise InvalidInput(f"n must be >= 0, got {n!r}", field="n")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        segs = rng.choice(len(self.segments), size=n, p=self.segment_probs)
        cum = np.cumsum(self.logging_probs[segs], axis=1)
        acts = np.minimum((rng.random(n)[:, None] >= cum).sum(axis=1), len(self.actions) - 1)
        accepted = rng.random(n) < self.reward_probs[segs, acts]
        rewards = np.where(accepted, self.action_values[acts], 0.0)
        props = self.logging_probs[segs, acts]
        contexts = [self.context(s) for s in range(len(self.segments))]
        return [
            LoggedRound(
                context=dict(contexts[s]),
                action=self.actions[a],
                reward=r,
                propensity=p,
                actions=self.actions,
                decision_id=f"d{i}",
            )
            for i, (s, a, r, p) in enumerate(zip(segs.tolist(), acts.tolist(), rewards.tolist(), props.tolist(), strict=True))
        ]

    def true_value(self, target: Target) -> float:
        """Exact expected reward per decision of ``target``: ``Σ_s P(s) Σ_a π(a|s) v_a p(s, a)``."""
        total = 0.0
        for s in range(len(self.segments)):
            probs = target(self.context(s), self.actions)
            inner = sum(float(probs.get(a, 0.0)) * self.expected_reward(s, a) for a in self.actions)
            total += float(self.segment_probs[s]) * inner
        return total
