"""The models as serving sees them: dense weights per model, swapped in when a new version lands.

Serving never touches river: the learner publishes exported weights (the non-zero entries of a
float64 vector, the bias, and per-treatment evidence) with a version, and each serving process swaps them in — one
reference assignment, so a decision uses one version throughout. New versions are announced
on a pub/sub channel and also polled, so a missed message delays a swap by one poll at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from engine.learning.features import Featurizer
from engine.learning.spec import ModelSpec, active_model
from engine.state.learning_store import LearningStore

log = logging.getLogger("engine.models")

POLL_INTERVAL_S = 1.0


def pack_weights(dense: np.ndarray) -> bytes:
    """Only the non-zero weights travel: a model has hundreds of learned features in a space of
    2^18, so a version is kilobytes instead of megabytes on every publish and every pick-up."""
    idx = np.flatnonzero(dense).astype("<i4")
    return np.int32(idx.size).astype("<i4").tobytes() + idx.tobytes() + dense[idx].astype("<f8").tobytes()


def unpack_weights(blob: bytes, dimension: int) -> np.ndarray:
    """The dense vector the kernel indexes; refuses a blob that does not fit the dimension."""
    n = int(np.frombuffer(blob, "<i4", count=1)[0]) if len(blob) >= 4 else -1
    if n < 0 or len(blob) != 4 + 12 * n:
        raise ValueError(f"malformed weights: {len(blob)} bytes")
    idx = np.frombuffer(blob, "<i4", count=n, offset=4)
    if n and (idx.min() < 0 or idx.max() >= dimension):
        raise ValueError(f"weight index out of range for dimension {dimension}")
    dense = np.zeros(dimension, np.float64)
    dense[idx] = np.frombuffer(blob, "<f8", count=n, offset=4 + 4 * n)
    return dense


@dataclass(frozen=True)
class ServedModel:
    spec: ModelSpec
    featurizer: Featurizer
    version: int = 0
    weights: np.ndarray | None = None
    bias: float = 0.0
    evidence: Mapping[str, float] = field(default_factory=dict)
    successes: Mapping[str, float] = field(default_factory=dict)
    failures: Mapping[str, float] = field(default_factory=dict)
    customer_fields: tuple[str, ...] = ()
    context_fields: tuple[str, ...] = ()
    fingerprint: str = ""

    @cached_property
    def stats(self) -> Mapping[str, tuple[float, float, float]]:
        """(evidence, successes, failures) per treatment: one lookup per candidate, not three."""
        ids = set(self.evidence) | set(self.successes) | set(self.failures)
        return {t: (self.evidence.get(t, 0.0), self.successes.get(t, 0.0), self.failures.get(t, 0.0)) for t in ids}

    @cached_property
    def label(self) -> dict[str, object]:
        """Logged with each decision; `window_ms` lets the write-back open the reward windows.
        Built once per served version and shared by its decisions: read it, never change it."""
        window_ms = self.spec.reward.non_response_after_s * 1000
        return {"id": self.spec.id, "version": self.version, "fingerprint": self.fingerprint, "window_ms": window_ms}

    def inputs(self, profile: Mapping[str, object], context: Mapping[str, object]) -> dict[str, dict[str, object]]:
        """The fields this model reads, as they were at decision time (logged for learning)."""
        return {
            "customer": {f: profile[f] for f in self.customer_fields if f in profile},
            "context": {f: context[f] for f in self.context_fields if f in context},
        }


def _fields(spec: ModelSpec, namespace: str) -> tuple[str, ...]:
    prefix = namespace + "."
    return tuple(sorted({r[len(prefix) :] for r in spec.features.refs() if r.startswith(prefix)}))


class ModelRegistry:
    def __init__(self, specs: Sequence[ModelSpec]) -> None:
        self.specs = list(specs)
        self._models: dict[str, ServedModel] = {
            s.id: ServedModel(
                s,
                Featurizer(s),
                customer_fields=_fields(s, "customer"),
                context_fields=_fields(s, "context"),
                fingerprint=s.fingerprint,  # a digest of the spec: computed once, not per decision
            )
            for s in specs
        }
        self._by_placement: dict[str | None, str | None] = {}

    def for_placement(self, placement: str | None) -> ServedModel | None:
        if placement not in self._by_placement:
            spec = active_model(self.specs, placement)
            self._by_placement[placement] = spec.id if spec else None
        model_id = self._by_placement[placement]
        return self._models[model_id] if model_id else None

    def get(self, model_id: str) -> ServedModel | None:
        return self._models.get(model_id)

    def versions(self) -> dict[str, int]:
        """Version served of each enabled model (0: priors until the first publication)."""
        return {k: m.version for k, m in self._models.items() if m.spec.enabled}

    def install(self, model_id: str, version: int, weights: bytes, meta: Mapping[str, object]) -> bool:
        """Swap in a published version; refused when it was trained on another featurization."""
        current = self._models.get(model_id)
        if current is None or version <= current.version:
            return False
        if meta.get("fingerprint") != current.fingerprint:
            log.warning("model %s v%d was trained with another spec; still serving v%d", model_id, version, current.version)
            return False
        try:
            vector = unpack_weights(weights, current.spec.dimension)
        except ValueError as exc:
            log.warning("model %s v%d not installed: %s", model_id, version, exc)
            return False
        self._models[model_id] = replace(
            current,
            version=version,
            weights=vector,
            bias=float(meta.get("bias", 0.0)),  # type: ignore[arg-type]
            evidence=dict(meta.get("evidence") or {}),  # type: ignore[call-overload]
            successes=dict(meta.get("successes") or {}),  # type: ignore[call-overload]
            failures=dict(meta.get("failures") or {}),  # type: ignore[call-overload]
        )
        return True

    async def refresh(self, store: LearningStore) -> list[str]:
        """Install every model whose published version is newer than the one served."""
        updated = []
        for model_id, current in list(self._models.items()):
            if await store.served_version(model_id) <= current.version:
                continue
            served = await store.load_served(model_id)
            if served is not None and self.install(model_id, served.version, served.weights, served.meta):
                updated.append(model_id)
        return updated


async def follow_models(registry: ModelRegistry, store: LearningStore, stop: asyncio.Event) -> None:
    """Keep `registry` current: refresh on every announcement, and at least once a second."""
    pubsub = None
    try:
        pubsub = await store.subscribe_updates()
    except Exception:  # polling alone still works
        log.warning("model updates: pub/sub unavailable, polling only")
    try:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await registry.refresh(store)
            if pubsub is not None:
                with contextlib.suppress(Exception):
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=POLL_INTERVAL_S)
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL_S)
    finally:
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
