"""The learner: turns logged decisions and feedback into training examples, exactly once.

Labels. A positive outcome (accept, purchase, click — as the model spec weighs them) is learned
as soon as its feedback arrives; a stronger outcome later for the same impression adds only the
difference, so an impression never counts for more than its strongest outcome. An impression
with no positive outcome when its window (`non_response_after_s`) closes is learned as a
negative; an explicit `reject` is a negative at once. A positive that arrives after the window
closed (but while the decision record lives) is still learned.

Features. Each decision record carries the customer and context fields the model read at
decision time, so learning uses what the model saw, not today's profile.

Windows. The decision write-back opens each shown treatment's reward window (a sorted set of
due times per model), so the learner never reads the decisions stream back.

Exactly once. Feedback is read through a consumer group per model. A snapshot (learner,
exported weights, evidence, and the last stream position it covers) is stored in one MULTI
with the reward windows it settles and the positives it recorded; entries are acknowledged
only after that. On restart the snapshot is loaded and
entries at or before its position are skipped, so nothing is learned twice or skipped.

One learner per model at a time holds a lease in Redis; other processes stand by and take over
(claiming the entries delivered to the dead one) when the lease lapses. Several models are
learned by whichever processes hold their leases, so learners scale out by model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from engine.clock import Clock
from engine.domain import StoredDecision
from engine.learning.features import Featurizer
from engine.learning.learners import Learner, make_learner
from engine.learning.serving import pack_weights
from engine.learning.spec import ModelSpec
from engine.state.keys import STREAM_FEEDBACK
from engine.state.learning_store import LearningStore, StreamEntry, stream_order

log = logging.getLogger("engine.learner")

STREAMS = (STREAM_FEEDBACK,)
"""Only feedback: reward windows are opened by the decision write-back itself."""
POSITIONS_EVERY_S = 5.0


def group_name(model_id: str) -> str:
    return f"learner:{model_id}"


def window_member(decision_id: str, treatment_id: str) -> str:
    return f"{decision_id}|{treatment_id}"


@dataclass
class LearnerState:
    """What a snapshot holds: the learner, its evidence per treatment, and how far it has read."""

    learner: Learner
    fingerprint: str
    evidence: dict[str, float] = field(default_factory=dict)
    successes: dict[str, float] = field(default_factory=dict)
    failures: dict[str, float] = field(default_factory=dict)
    positions: dict[str, str] = field(default_factory=dict)
    examples: int = 0

    def covered(self, entry: StreamEntry) -> bool:
        seen = self.positions.get(entry.stream)
        return seen is not None and entry.order <= stream_order(seen)


@dataclass
class StepReport:
    entries: int = 0
    positives: int = 0
    negatives: int = 0
    expired: int = 0
    published: int | None = None


class LearnerWorker:
    def __init__(
        self,
        store: LearningStore,
        spec: ModelSpec,
        clock: Clock,
        *,
        consumer: str,
        batch: int = 500,
        snapshot_every_s: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.spec = spec
        self.clock = clock
        self.consumer = consumer
        self.batch = batch
        self.snapshot_every_s = snapshot_every_s
        self.monotonic = monotonic
        self.featurizer = Featurizer(spec)
        self.group = group_name(spec.id)
        self.state = LearnerState(make_learner(spec), spec.fingerprint)
        self.version = 0
        self._unacked: list[StreamEntry] = []
        self._settled: dict[str, None] = {}  # ordered set: settled since the last snapshot
        self._positives: dict[str, float] = {}
        self._dirty = False
        self._learned = False
        self._last_snapshot = monotonic()
        self._restored = False
        self._pending_from: dict[str, str] = {}

    # -- start -------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Resume from the last snapshot (unless the spec's featurization changed since)."""
        for stream in STREAMS:
            await self.store.ensure_group(stream, self.group)
            await self.store.claim_stale(stream, self.group, self.consumer)
        snapshot = await self.store.load_snapshot(self.spec.id)
        if snapshot is not None:
            state: LearnerState = pickle.loads(snapshot.learner)  # written by this class only
            if state.fingerprint == self.spec.fingerprint:
                self.state = state
                self.version = snapshot.version
            else:
                # Old weights mean nothing under new features; keep the stream positions only.
                self.state.positions = state.positions
                log.warning("model %s: spec changed since the last snapshot; starting a fresh learner", self.spec.id)
        self._pending_from = {s: "0" for s in STREAMS}
        self._restored = True

    # -- one round ---------------------------------------------------------------------------

    async def step(self, *, block_ms: int | None = 100) -> StepReport:
        """Read what is new (first this consumer's pending entries), learn it, maybe snapshot."""
        report = StepReport()
        entries = await self._read(block_ms)
        fresh = [e for e in entries if not self.state.covered(e)]
        self._unacked.extend(entries)
        report.entries = len(fresh)
        feedback = [e for e in fresh if e.stream == STREAM_FEEDBACK]
        await self._learn_feedback(feedback, report)
        await self._close_windows(report)
        for e in fresh:
            self.state.positions[e.stream] = e.id
        self._dirty = self._dirty or bool(fresh) or bool(self._settled)
        since = self.monotonic() - self._last_snapshot
        # New weights are published quickly; a snapshot that only moves stream positions
        # (decisions read, nothing learned) can wait, so an idle model costs next to nothing.
        if (self._learned and since >= self.snapshot_every_s) or (self._dirty and since >= POSITIONS_EVERY_S):
            report.published = await self.publish()
        return report

    async def _read(self, block_ms: int | None) -> list[StreamEntry]:
        """After a restart, page through what was delivered before (ours or claimed from a dead
        consumer) until nothing is left; then read new entries."""
        while self._pending_from:
            entries = await self.store.read(dict(self._pending_from), self.group, self.consumer, count=self.batch, block_ms=None)
            done = {s for s in self._pending_from if not any(e.stream == s for e in entries)}
            for e in entries:
                self._pending_from[e.stream] = e.id
            for s in done:
                del self._pending_from[s]
            if entries:
                return entries
        return await self.store.read({s: ">" for s in STREAMS}, self.group, self.consumer, count=self.batch, block_ms=block_ms)

    async def _learn_feedback(self, entries: Sequence[StreamEntry], report: StepReport) -> None:
        items = [orjson.loads(e.fields[b"f"]) for e in entries]
        wanted = [
            f for f in items if f["outcome"] == "reject" or self.spec.reward.outcome_weight(f["outcome"], f.get("value")) > 0
        ]
        if not wanted:
            return
        records = await self.store.decisions([f["decision_id"] for f in wanted])
        members = [window_member(f["decision_id"], f["treatment_id"]) for f in wanted]
        stored = await self.store.positive_weights(self.spec.id, members)
        now = self.clock.now_ms()
        window_ms = self.spec.reward.non_response_after_s * 1000
        for f, record, member, before in zip(wanted, records, members, stored, strict=True):
            if record is None or not self._ours(record):
                report.expired += record is None
                continue
            previous = self._positives.get(member, before or 0.0)
            if f["outcome"] == "reject":
                if previous == 0.0 and member not in self._settled:
                    self._learn(record, f["treatment_id"], False, self.spec.reward.negative_weight)
                    report.negatives += 1
                    self._settled[member] = None
                continue
            weight = self.spec.reward.outcome_weight(f["outcome"], f.get("value"))
            if weight <= previous:
                continue
            self._learn(record, f["treatment_id"], True, weight - previous)
            report.positives += 1
            if now < record.ts + window_ms:
                self._positives[member] = weight

    async def _close_windows(self, report: StepReport) -> None:
        # Settled windows stay in the due set until the snapshot that covers them, so look past them.
        due = await self.store.due_windows(self.spec.id, self.clock.now_ms(), self.batch + len(self._settled))
        due = [(m, ts) for m, ts in due if m not in self._settled][: self.batch]
        if not due:
            return
        members = [m for m, _ in due]
        stored = await self.store.positive_weights(self.spec.id, members)
        open_negatives = [m for m, w in zip(members, stored, strict=True) if not w and not self._positives.get(m)]
        records = await self.store.decisions([m.split("|", 1)[0] for m in open_negatives])
        for member, record in zip(open_negatives, records, strict=True):
            if record is None:
                report.expired += 1
                continue
            self._learn(record, member.split("|", 1)[1], False, self.spec.reward.negative_weight)
            report.negatives += 1
        self._settled.update(dict.fromkeys(members))

    @property
    def dirty(self) -> bool:
        return self._dirty

    def _ours(self, record: StoredDecision) -> bool:
        return (record.model or {}).get("id") == self.spec.id

    def _learn(self, record: StoredDecision, treatment_id: str, label: bool, weight: float) -> None:
        treatment = next((t for t in record.treatments if t["id"] == treatment_id), None)
        if treatment is None:
            return
        inputs = record.inputs or {}
        key = (treatment_id, treatment.get("group", ""), treatment.get("kind", ""))
        x = self.featurizer.featurize(inputs.get("customer"), inputs.get("context"), key)
        self.state.learner.learn_one(x, label, weight)
        self.state.evidence[treatment_id] = self.state.evidence.get(treatment_id, 0.0) + weight
        tally = self.state.successes if label else self.state.failures
        tally[treatment_id] = tally.get(treatment_id, 0.0) + weight
        self.state.examples += 1
        self._dirty = self._learned = True

    # -- publishing --------------------------------------------------------------------------

    async def publish(self) -> int:
        """Store a snapshot (and new served weights if anything was learned), then acknowledge
        the entries it covers."""
        meta: dict[str, Any] = {
            "model_id": self.spec.id,
            "fingerprint": self.spec.fingerprint,
            "evidence": self.state.evidence,
            "successes": self.state.successes,
            "failures": self.state.failures,
            "examples": self.state.examples,
            "positions": self.state.positions,
            "published_ms": self.clock.now_ms(),
        }
        blob = pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)
        packed = None
        if self._learned:
            weights, meta["bias"] = self.state.learner.export_linear(self.spec.hash_bits)
            packed = pack_weights(weights)
        self.version = await self.store.save_snapshot(
            self.spec.id, blob, packed, meta, list(self._settled), self._positives, self.version
        )
        await self.store.ack(self.group, self._unacked)
        self._unacked, self._settled, self._positives = [], {}, {}
        self._dirty = self._learned = False
        self._last_snapshot = self.monotonic()
        return self.version


LEASE_TTL_MS = 5_000


async def learn_model(
    store: LearningStore,
    spec: ModelSpec,
    clock: Clock,
    consumer: str,
    stop: asyncio.Event,
    *,
    lease_ttl_ms: int = LEASE_TTL_MS,
    idle_s: float = 0.5,
) -> None:
    """Learn one model while holding its lease; stand by while another process holds it.

    A fresh worker restores from the snapshot each time the lease is (re)gained, so a process
    that lost its lease never publishes over the newer learner's work.
    """
    while not stop.is_set():
        if not await store.acquire_lease(spec.id, consumer, lease_ttl_ms):
            await _sleep_or_stop(stop, idle_s)
            continue
        worker = LearnerWorker(store, spec, clock, consumer=consumer)
        try:
            await worker.restore()
            renew_every = lease_ttl_ms / 3000
            next_renew = time.monotonic() + renew_every
            while not stop.is_set():
                await worker.step(block_ms=100)
                if time.monotonic() >= next_renew:
                    if not await store.renew_lease(spec.id, consumer, lease_ttl_ms):
                        log.warning("model %s: lease lost; standing by", spec.id)
                        break
                    next_renew = time.monotonic() + renew_every
            else:
                if worker.dirty:
                    await worker.publish()
        except Exception:
            log.exception("model %s: learner failed; retrying from the last snapshot", spec.id)
            await _sleep_or_stop(stop, idle_s)
        finally:
            with contextlib.suppress(Exception):
                await store.release_lease(spec.id, consumer)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
