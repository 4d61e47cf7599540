"""The learner: turns logged decisions and feedback into training examples, exactly once.

Labels. Every rule below is judged by when the feedback happened (its `ts`) against the
decision's window (`non_response_after_s` from the decision), never by when the learner reads it,
so a learner that is behind or was down learns what a punctual one would have learned.

* A positive outcome (accept, purchase, click — as the model spec weighs them) is learned as
  soon as its feedback is read. A stronger outcome later for the same impression adds only the
  difference, for as long as the decision record lives: the positive weights of an impression
  add up to its strongest outcome, never more.
* An impression with no positive outcome within its window is learned once as a negative. The
  window is closed when the learner's clock passes it and it has read the feedback of that time.
* An explicit `reject` is that negative at once, if no positive came first.
* Late rewards within the decision TTL count: a positive that happened after the window is
  still learned (after the window's negative, which it does not undo), while the record lives.

Features. Each decision record carries the customer and context fields the model read at
decision time, so learning uses what the model saw, not today's profile.

Windows. The decision write-back opens each shown treatment's reward window (a sorted set of
due times per model), so the learner never reads the decisions stream back.

Exactly once: the snapshot decides what is next. A snapshot (learner, exported weights,
evidence, and the last stream position it covers) is stored atomically with the reward windows
it settles and the positives it recorded. A learner restores the stored snapshot and reads the
feedback stream in order from exactly that position, so the entries it learns are precisely the
ones after what the snapshot holds; its own snapshot is accepted only if it still replaces the
one it restored (and its learner still holds the lease). Stored snapshots therefore form one
chain in which each entry is learned by exactly one link: none twice, because every reader starts
after what its predecessor covered, and none skipped, because a reader skips nothing it has not
learned itself — it never jumps past an entry by id.

Reading does not go through the consumer group (XREADGROUP), on purpose: a delivery there is a
write that hands the entry to one consumer. A holder that stalled past its lease and then read
would take entries out of reach of the learner that took over, whose position then moves past
them, and they would be lost. A plain read from a position changes nothing, so what a stale
reader sees costs nobody anything; only its snapshot could, and that is refused. The group is
told afterwards how far learning is done (once the snapshot covering it is stored), so the
stream can be trimmed up to there and its lag watched; entries left pending by older readers are
acknowledged then too.

One learner per model at a time holds a lease in Redis; other processes stand by, read nothing,
and take over from the stored snapshot when the lease lapses. A learner whose snapshot is refused
stands by: the entries it read are learned (once) by the learner whose snapshot it could not
replace. Several models are learned by whichever processes hold their leases, so learners scale
out by model.
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
from engine.state.learning_store import ACK_BATCH, LearningStore, SnapshotRefused, StreamEntry

log = logging.getLogger("engine.learner")

STREAMS = (STREAM_FEEDBACK,)
"""Only feedback: reward windows are opened by the decision write-back itself."""
START = "0-0"
"""The position before any entry: where a model with no snapshot starts reading."""
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
        lease: str | None = None,
    ) -> None:
        """`lease`: the owner name of the model's lease this worker learns under; its snapshots
        are refused once another holds it. None for a worker that is the only learner."""
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
        self.lease = lease
        self.version = 0
        self._acknowledged: dict[str, str] = {}  # per stream: the position the group was last told of
        self._settled: dict[str, None] = {}  # ordered set: settled since the last snapshot
        self._positives: dict[str, tuple[float, int]] = {}  # weight, and when it may be forgotten
        self._horizon = 0
        self._dirty = False
        self._learned = False
        self._last_snapshot = monotonic()

    # -- start -------------------------------------------------------------------------------

    async def restore(self) -> None:
        """Resume from the last snapshot (unless the spec's featurization changed since): reading
        continues right after the position it records."""
        for stream in STREAMS:
            await self.store.ensure_group(stream, self.group)
        snapshot = await self.store.load_snapshot(self.spec.id)
        if snapshot is not None:
            state: LearnerState = pickle.loads(snapshot.learner)  # written by this class only
            self.version = snapshot.version  # the snapshot ours must replace, whatever it holds
            if state.fingerprint == self.spec.fingerprint:
                self.state = state
            else:
                # Old weights mean nothing under new features; keep the stream positions only.
                self.state.positions = state.positions
                log.warning("model %s: spec changed since the last snapshot; starting a fresh learner", self.spec.id)
        # The group may not know of the stored snapshot yet (a learner stopped between storing
        # and telling it), and older readers may have left entries pending there.
        await self._acknowledge()

    # -- one round ---------------------------------------------------------------------------

    async def step(self, *, block_ms: int | None = 100) -> StepReport:
        """Read what follows the position reached, learn it, maybe snapshot."""
        report = StepReport()
        entries = await self._read(block_ms)
        report.entries = len(entries)
        self._horizon = self._read_up_to(entries)
        feedback = [e for e in entries if e.stream == STREAM_FEEDBACK]
        await self._learn_feedback(feedback, report)
        await self._close_windows(report)
        for e in entries:
            self.state.positions[e.stream] = e.id
        if entries:
            log.debug("model %s: %s read %d entries up to %s", self.spec.id, self.consumer, len(entries), entries[-1].id)
        self._dirty = self._dirty or bool(entries) or bool(self._settled)
        since = self.monotonic() - self._last_snapshot
        # New weights are published quickly; a snapshot that only moves stream positions
        # (decisions read, nothing learned) can wait, so an idle model costs next to nothing.
        if (self._learned and since >= self.snapshot_every_s) or (self._dirty and since >= POSITIONS_EVERY_S):
            report.published = await self.publish()
        return report

    async def _read(self, block_ms: int | None) -> list[StreamEntry]:
        """The next page after the position reached: in stream order, with no gap, whatever any
        other learner has read."""
        (stream,) = STREAMS
        after = self.state.positions.get(stream, START)
        return await self.store.read_after(stream, after, count=self.batch, block_ms=block_ms)

    def _read_up_to(self, entries: Sequence[StreamEntry]) -> int:
        """The time up to which feedback has been read: now when the stream is drained, else when
        Redis appended the last entry of a full page — a window due after that may still have a
        positive waiting in the backlog, so it must not be closed yet. Redis's append time, not
        the feedback's own `ts`: that comes from the client, and one clock running ahead would
        close windows whose positives are still unread."""
        now = self.clock.now_ms()
        if len(entries) < self.batch or not entries:
            return now
        return min(now, entries[-1].order[0])

    def _window_ms(self, record: StoredDecision) -> int:
        """The window the decision opened (a spec change since does not move it)."""
        logged = (record.model or {}).get("window_ms")
        return int(logged) if logged else self.spec.reward.non_response_after_s * 1000

    async def _learn_feedback(self, entries: Sequence[StreamEntry], report: StepReport) -> None:
        items = [orjson.loads(e.fields[b"f"]) for e in entries]
        wanted = [
            f for f in items if f["outcome"] == "reject" or self.spec.reward.outcome_weight(f["outcome"], f.get("value")) > 0
        ]
        if not wanted:
            return
        records = await self.store.decisions_with_ttl([f["decision_id"] for f in wanted])
        members = [window_member(f["decision_id"], f["treatment_id"]) for f in wanted]
        stored = await self.store.impressions(self.spec.id, members)
        now = self.clock.now_ms()
        for f, (record, ttl_ms), member, (before, window_open) in zip(wanted, records, members, stored, strict=True):
            if record is None or not self._ours(record):
                report.expired += record is None
                continue
            previous = self._positives[member][0] if member in self._positives else before or 0.0
            # Still open: not settled by a snapshot, nor since. Closing it is what learns its negative.
            unsettled = window_open and member not in self._settled
            if f["outcome"] == "reject":
                if previous == 0.0 and unsettled:
                    self._settle_as_negative(record, member, f["treatment_id"], report)
                continue
            weight = self.spec.reward.outcome_weight(f["outcome"], f.get("value"))
            if weight <= previous:
                continue
            happened = int(f["ts"]) if f.get("ts") is not None else now
            if previous == 0.0 and unsettled and happened >= record.ts + self._window_ms(record):
                # The first positive came after the window: the impression was unanswered within
                # it, as a punctual learner would have found when closing it.
                self._settle_as_negative(record, member, f["treatment_id"], report)
            self._learn(record, f["treatment_id"], True, weight - previous)
            report.positives += 1
            # Remembered as long as feedback for it can be learned, so a later, stronger outcome
            # adds only the difference; the snapshot forgets it when the record is gone.
            self._positives[member] = (weight, now + (ttl_ms if ttl_ms > 0 else self._window_ms(record)))

    def _settle_as_negative(self, record: StoredDecision, member: str, treatment_id: str, report: StepReport) -> None:
        self._learn(record, treatment_id, False, self.spec.reward.negative_weight)
        report.negatives += 1
        self._settled[member] = None

    async def _close_windows(self, report: StepReport) -> None:
        # Settled windows stay in the due set until the snapshot that covers them, so look past them.
        due = await self.store.due_windows(self.spec.id, self._horizon, self.batch + len(self._settled))
        due = [(m, ts) for m, ts in due if m not in self._settled][: self.batch]
        if not due:
            return
        members = [m for m, _ in due]
        stored = await self.store.positive_weights(self.spec.id, members)
        open_negatives = [m for m, w in zip(members, stored, strict=True) if not w and m not in self._positives]
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
        the entries it covers.

        Raises SnapshotRefused, acknowledging nothing, when another learner holds the lease or
        has stored a snapshot since this one restored: the entries read since are then learned
        (once) by the learner reading on from the stored snapshot, and this worker must not be
        used again."""
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
            self.spec.id,
            blob,
            packed,
            meta,
            list(self._settled),
            self._positives,
            self.version,
            owner=self.lease,
            now_ms=self.clock.now_ms(),
        )
        self._settled, self._positives = {}, {}
        self._dirty = self._learned = False
        self._last_snapshot = self.monotonic()
        await self._acknowledge()
        return self.version

    async def _acknowledge(self) -> None:
        """Tell the group how far the stored snapshot reaches; called only once it is stored, so
        nothing is marked done (and trimmable) that a restart would still need."""
        for stream, position in self.state.positions.items():
            if self._acknowledged.get(stream) == position:
                continue
            while await self.store.acknowledge(stream, self.group, position) >= ACK_BATCH:
                pass
            self._acknowledged[stream] = position


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
    snapshot_every_s: float = 0.5,
) -> None:
    """Learn one model while holding its lease; stand by while another process holds it.

    A fresh worker restores from the snapshot each time the lease is (re)gained. A process that
    stalled past its lease finds out when it next publishes (the snapshot is refused) or renews,
    and stands by; what it read is read again by the new holder, from the stored snapshot.
    """
    while not stop.is_set():
        if not await store.acquire_lease(spec.id, consumer, lease_ttl_ms):
            await _sleep_or_stop(stop, idle_s)
            continue
        worker = LearnerWorker(store, spec, clock, consumer=consumer, lease=consumer, snapshot_every_s=snapshot_every_s)
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
        except SnapshotRefused as exc:
            log.warning("%s; standing by", exc)
        except Exception:
            log.exception("model %s: learner failed; retrying from the last snapshot", spec.id)
            await _sleep_or_stop(stop, idle_s)
        finally:
            with contextlib.suppress(Exception):
                await store.release_lease(spec.id, consumer)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
