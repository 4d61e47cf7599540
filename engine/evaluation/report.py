"""One call behind the command line's offline evaluation: policy text in, estimates out.

The command line deals in strings; everything that can be wrong with them (an unknown policy, a
missing model, an unreadable rules directory, a log file that is not there, an export into a
directory that is not there) is refused here as ``InvalidInput`` naming the value, before any log
is read, so a typo costs nothing. A typo the log alone can reveal (a fixed treatment that never
appears in it) is reported as ``EvaluationReport.no_overlap`` for the caller to refuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

from engine.decision.exploration import ExplorationPolicy
from engine.errors import InvalidInput, RuleSetError
from engine.evaluation.replay import (
    JoinCounts,
    LogSummary,
    evaluate_logs,
    exploration_policy,
    fixed_action,
    join_logs,
    model_policy,
    read_rounds,
    ruleset_policy,
    summary,
    write_rounds,
)
from engine.evaluation.training import TRAIN_SHARE, TrainingSplit, split_chronologically, train_on_rounds
from engine.learning.banditlog import LoggedRound
from engine.learning.ope import Estimate, Target
from engine.learning.serving import ModelRegistry, ServedModel
from engine.learning.spec import ModelSpec, Reward, active_model, load_model_specs
from engine.rules.loader import load_ruleset
from engine.state.learning_store import LearningStore
from engine.state.log_reader import read_logs

__all__ = ["POLICY_FORMS", "TRAIN_MODES", "EvaluationReport", "TrainMode", "render", "run_evaluation"]

TrainMode = Literal["auto", "always", "never"]
TRAIN_MODES: tuple[TrainMode, ...] = ("auto", "always", "never")
POLICY_FORMS = "fixed:<treatment_id>, greedy, random, epsilon:<0..1>, softmax:<temperature>, model[:<model_id>], rules:<dir>"


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    """Estimates for the candidate policy beside the logging policy's observed value."""

    policy: str
    source: str
    estimates: tuple[Estimate, ...]
    logging: LogSummary
    counts: JoinCounts | None = None
    """How the decision log was joined; None when rounds came from a file."""
    exported: int | None = None
    notes: tuple[str, ...] = ()
    training: TrainingSplit | None = None
    """Set when a model was trained here: then ``estimates`` and ``logging`` cover only the held-out rounds."""
    no_overlap: str | None = None
    """Set, to a sentence saying why, when the policy chooses no action the log shows: every row
    then weighs 0, so IPS's 0 is an artefact and SNIPS is undefined. The figures are no evidence
    about the policy; present this instead of them."""


def _bad(policy: str, why: str) -> InvalidInput:
    return InvalidInput(f"policy {policy!r}: {why}; expected one of {POLICY_FORMS}", field="policy")


def _number(policy: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _bad(policy, f"{raw!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(policy, f"{raw!r} is not a finite number")
    return value


def _exploration(policy: str) -> ExplorationPolicy | None:
    kind, _, arg = policy.partition(":")
    try:
        if policy == "greedy":
            return ExplorationPolicy.greedy()
        if policy == "random":
            return ExplorationPolicy.random()
        if kind == "epsilon":
            return ExplorationPolicy.epsilon_greedy(_number(policy, arg))
        if kind == "softmax":
            return ExplorationPolicy.softmax(_number(policy, arg))
    except ValueError as exc:
        raise _bad(policy, str(exc)) from None
    return None


def _specs(models_dir: Path | None, rules_dir: Path | None) -> list[ModelSpec]:
    if models_dir is None:
        return []
    try:
        if rules_dir is None:
            return load_model_specs(models_dir)
        vocab = load_ruleset(rules_dir).vocabulary.namespaces
        return load_model_specs(models_dir, customer_fields=vocab["customer"], context_fields=vocab["context"])
    except RuleSetError as exc:
        raise InvalidInput(f"model specs in {str(models_dir)!r} could not be loaded: {exc.message}", field="models_dir") from None


def _spec(specs: list[ModelSpec], model_id: str, field: str) -> ModelSpec:
    for s in specs:
        if s.id == model_id:
            return s
    known = ", ".join(s.id for s in specs) or "none loaded; pass models_dir"
    raise InvalidInput(f"unknown model {model_id!r} (known: {known})", field=field)


async def _published(spec: ModelSpec, redis_client: Any | None, notes: list[str]) -> ServedModel | None:
    """The spec's published weights as serving would install them, or None when there are none."""
    if redis_client is None:
        return None
    served = await LearningStore(redis_client).load_served(spec.id)
    if served is None:
        return None
    registry = ModelRegistry([spec])
    if not registry.install(spec.id, served.version, served.weights, served.meta):
        raise InvalidInput(f"published weights of model {spec.id!r} do not match its spec (trained on another featurization)")
    notes.append(
        f"model {spec.id!r} version {served.version} (published weights: they may have learned from the rounds "
        "evaluated here; train='always' trains on earlier rounds and holds the rest out)"
    )
    return registry.get(spec.id)


def _trained(
    spec: ModelSpec, rounds: list[LoggedRound], train_share: float, why: str, notes: list[str]
) -> tuple[ServedModel, list[LoggedRound], TrainingSplit | None]:
    """The model to replay and the rounds to evaluate it on: trained on the earlier part when
    the log can be split, otherwise its priors on the whole log (see engine.evaluation.training)."""
    split = split_chronologically(rounds, train_share)
    if split is None:
        notes.append(
            f"{why}, and {summary(rounds).decisions} decision(s) are too few to train model {spec.id!r} on "
            "earlier ones and evaluate it on later ones: it scores with priors only"
        )
        served = ModelRegistry([spec]).get(spec.id)
        assert served is not None
        return served, rounds, None
    train, held_out = split
    train_summary, eval_summary = summary(train), summary(held_out)
    training = TrainingSplit(
        train_rows=train_summary.rows,
        train_decisions=train_summary.decisions,
        eval_rows=eval_summary.rows,
        eval_decisions=eval_summary.decisions,
        train_until_ts=max((r.ts for r in train if r.ts is not None), default=None),
        eval_from_ts=min((r.ts for r in held_out if r.ts is not None), default=None),
    )
    notes.append(f"{training.describe(spec.id)}: {why}")
    return train_on_rounds(spec, train), held_out, training


def _check_paths(source: Path | None, export: Path | None) -> None:
    """Refuse a log file that is not there, or an export that could not be written, before any
    log is read: a long read from Redis should not end in a traceback about a typo."""
    if source is not None and not source.is_file():
        why = "is a directory, not a file" if source.is_dir() else "does not exist"
        raise InvalidInput(f"log file {str(source)!r} {why}", field="source")
    if export is None:
        return
    if export.is_dir():
        raise InvalidInput(f"cannot export to {str(export)!r}: it is a directory", field="export")
    if not export.parent.is_dir():
        raise InvalidInput(f"cannot export to {str(export)!r}: directory {str(export.parent)!r} does not exist", field="export")


def _no_overlap(policy: str, rounds: Sequence[LoggedRound], estimates: Sequence[Estimate]) -> str | None:
    """Why the log cannot speak for ``policy``, or None when some row carries weight.

    All estimates share one ESS, which is 0 exactly when every row's weight is. A fixed action is
    the usual culprit, and a mistyped treatment id otherwise looks like a policy that earns 0.
    """
    if any(e.ess > 0 for e in estimates):
        return None
    head = f"policy {policy!r} never chooses any action in the log, so the log cannot tell what it would earn"
    kind, _, arg = policy.partition(":")
    if kind != "fixed":
        return f"{head} (it gives no probability to any treatment the log shows)"
    candidates = {a for r in rounds for a in r.actions}
    if arg in candidates:
        return f"{head}: {arg!r} was a candidate but was never shown"
    known = sorted(candidates | {r.action for r in rounds})
    listed = ", ".join(known[:8]) + (f", … ({len(known)} in all)" if len(known) > 8 else "")
    return f"{head}: {arg!r} does not appear among the logged actions ({listed})"


def _in_window(ts: int | None, since_ms: int | None, until_ms: int | None) -> bool:
    if since_ms is None and until_ms is None:
        return True
    if ts is None:
        return False
    return (since_ms is None or ts >= since_ms) and (until_ms is None or ts <= until_ms)


async def run_evaluation(
    *,
    policy: str,
    source: Path | None = None,
    redis_client: Any | None = None,
    rules_dir: Path | None = None,
    models_dir: Path | None = None,
    model_id: str | None = None,
    clip: float | None = None,
    n_boot: int = 1_000,
    seed: int = 0,
    export: Path | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    train: TrainMode = "auto",
    train_share: float = TRAIN_SHARE,
) -> EvaluationReport:
    """Evaluate ``policy`` on rounds from ``source`` (a .jsonl/.csv file) or, without one, from Redis.

    ``model_id`` names the spec whose reward defines the rewards of rounds read from Redis (by
    default the model of a ``model:`` policy, else the default spec, else the standard reward),
    and the model of a bare ``model`` policy. ``model:`` policies explore as their spec says for
    each placement; ``rules:`` policies choose greedily (see ``ruleset_policy`` for what a rule
    set replay cannot see). ``since_ms``/``until_ms`` bound the decisions' log time (Redis) or
    the rows' ``ts`` (file).

    A ``model:`` policy replays the model's published weights when Redis has them. Without them
    (a spec that never served, or no Redis client) and ``train="auto"``, or always with
    ``train="always"``, the spec's learner is trained on the earliest ``train_share`` of the
    decisions and only the later ones are evaluated, the logging policy's value included, so
    both are measured on the same rounds (see :mod:`engine.evaluation.training` for why the
    split is chronological). ``train="never"`` keeps the spec as it would serve without
    weights: priors only. ``report.training`` says which rounds trained it.

    A policy that chooses no logged action still gets a report, with ``report.no_overlap``
    saying so: its figures are then no evidence, and a caller presenting them should refuse.
    """
    if train not in TRAIN_MODES:
        raise InvalidInput(f"train must be one of {', '.join(TRAIN_MODES)}, got {train!r}", field="train")
    if not 0.0 < train_share < 1.0:
        raise InvalidInput(f"train_share must be in (0, 1), got {train_share!r}", field="train_share")
    kind, _, arg = policy.partition(":")
    chosen = _exploration(policy)
    if chosen is None and not ((kind in ("fixed", "rules") and arg) or kind == "model"):
        raise _bad(policy, "unknown policy")
    if kind == "model" and not (arg or model_id):
        raise _bad(policy, "name the model as model:<model_id> or pass model_id")
    if source is None and redis_client is None:
        raise InvalidInput("no source file and no Redis client: nothing to read rounds from", field="source")
    _check_paths(source, export)

    notes: list[str] = []
    specs = _specs(models_dir, rules_dir)
    target: Target | None = None
    model_spec: ModelSpec | None = None
    served: ServedModel | None = None
    if chosen is not None:
        target = exploration_policy(chosen)
    elif kind == "fixed":
        target = fixed_action(arg)
    elif kind == "rules":
        try:
            rules = load_ruleset(Path(arg))
        except RuleSetError as exc:
            raise _bad(policy, f"rules could not be loaded: {exc.message}") from None
        target = ruleset_policy(rules, ExplorationPolicy.greedy())
        notes.append("rule set replay: eligibility conditions and context weights of the other rules are not applied")
    else:
        model_spec = _spec(specs, arg or str(model_id), "policy")
        if train != "always":
            served = await _published(model_spec, redis_client, notes)

    counts: JoinCounts | None = None
    if source is not None:
        try:
            rounds = [r for r in read_rounds(source) if _in_window(r.ts, since_ms, until_ms)]
        except OSError as exc:
            raise InvalidInput(f"log file {str(source)!r} could not be read: {exc.strerror or exc}", field="source") from None
        origin = str(source)
    else:
        reward_model = model_id or (arg if kind == "model" else None)
        default = active_model(specs, None)
        if reward_model is not None:
            reward = _spec(specs, reward_model, "model_id").reward
        elif default is not None:
            reward = default.reward
        else:
            reward = Reward()
        logs = await read_logs(redis_client, since_ms=since_ms, until_ms=until_ms)
        joined = join_logs(logs.decisions, logs.feedback, reward)
        rounds, counts, origin = joined.rounds, joined.counts, "redis"
        if logs.unreadable:
            notes.append(f"{logs.unreadable} unreadable stream entries skipped")
    if not rounds:
        raise InvalidInput(f"no usable logged rounds in {origin} for the window given", field="source")
    try:
        exported = write_rounds(rounds, export) if export is not None else None
    except OSError as exc:
        raise InvalidInput(f"cannot export to {str(export)!r}: {exc.strerror or exc}", field="export") from None
    training: TrainingSplit | None = None
    if model_spec is not None:
        if served is None and train == "never":
            notes.append(f"model {model_spec.id!r} is not trained (train='never'): it scores with priors only")
            served = ModelRegistry([model_spec]).get(model_spec.id)
        elif served is None:
            if train == "always":
                why = "training was asked for (train='always')"
            elif redis_client is None:
                why = "no Redis client to read published weights from"
            else:
                why = f"model {model_spec.id!r} has no published weights"
            served, rounds, training = _trained(model_spec, rounds, train_share, why, notes)
        assert served is not None
        target = model_policy(served)
    assert target is not None
    estimates = evaluate_logs(rounds, target, clip=clip, n_boot=n_boot, seed=seed)
    return EvaluationReport(
        policy,
        origin,
        tuple(estimates),
        summary(rounds),
        counts,
        exported,
        tuple(notes),
        training,
        no_overlap=_no_overlap(policy, rounds, estimates),
    )


def _fmt(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.4f}"


def render(report: EvaluationReport) -> Table:
    """A table for the terminal: one line per estimator, then the logging policy's observed value."""
    table = Table(title=f"Offline evaluation of {report.policy} (per decision)", title_justify="left")
    table.add_column("estimator")
    for name in ("value", "95% interval", "ESS", "rows / decisions"):
        table.add_column(name, justify="right")
    table.add_column("clipped", justify="right")
    for e in report.estimates:
        interval = "—" if math.isnan(e.ci_low) else f"[{_fmt(e.ci_low)}, {_fmt(e.ci_high)}]"
        clipped = f"{e.clipped_share:.1%} at {e.clip:g}" if e.clip is not None else "—"
        table.add_row(e.estimator.upper(), _fmt(e.value), interval, f"{e.ess:.1f}", f"{e.n} / {e.n_decisions}", clipped)
    log = report.logging
    table.add_row("logging policy", _fmt(log.value), "observed", "", f"{log.rows} / {log.decisions}", "", style="bold")
    caption = [f"source: {report.source}"]
    if report.counts is not None:
        c = report.counts
        skipped = ", ".join(f"{k} {v}" for k, v in c.skipped.items() if v) or "none"
        caption.append(f"decisions {c.decisions_used} of {c.decisions} used (skipped: {skipped})")
        caption.append(f"feedback {c.feedback_joined} of {c.feedback} joined")
    if report.exported is not None:
        caption.append(f"exported {report.exported} rows")
    caption.extend(report.notes)
    table.caption = "; ".join(caption)
    table.caption_justify = "left"
    return table
