"""Response-model specs: which learner, which features, what counts as a response, how to explore.

A model spec is a YAML file under `models/`, validated like a rule file: pydantic with
`extra="forbid"` for the shape, then checks that need outside knowledge (the learner registry,
the rule set's declared fields) with every problem reported at its file:line, all at once.
Feature names are checked against the rule set's declared fields because a misspelt field in a
model would otherwise silently never fire, and the model would quietly learn nothing from it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from engine.errors import RuleProblem, RuleSetError, SourcePos
from engine.rules.schema import Identifier
from engine.rules.yamlsource import Loc, YamlDocument, read_yaml
from engine.validation import Strict

Namespace = Literal["customer", "context", "treatment"]
TREATMENT_FIELDS: tuple[str, ...] = ("id", "group", "kind")
FieldRef = Annotated[str, Field(pattern=r"^(customer|context|treatment)\.[a-z][a-z0-9_]{0,63}$")]
PositiveOutcome = Literal["click", "accept", "purchase"]

NUMERIC_TYPES = frozenset({"number", "timestamp"})
"""Declared field types that need a numeric transform before a linear model may use them."""


class NumericTransform(Strict):
    """How a numeric field becomes a feature value: optional log1p, divide by `scale`, clip.

    Raw magnitudes (ages in years, points in the tens of thousands) would dominate every SGD step,
    so numeric fields are brought to roughly [-1, 1] and clipped so one outlier cannot swamp it.
    """

    scale: float = Field(default=1.0, gt=0)
    log1p: bool = Field(default=False, description="log1p(max(value, 0)) before scaling, for long-tailed counts.")
    clip: float = Field(default=10.0, gt=0, description="Bound on the absolute transformed value.")

    def apply(self, value: float) -> float:
        if self.log1p:
            value = math.log1p(max(value, 0.0))
        value /= self.scale
        return max(-self.clip, min(self.clip, value))


class Features(Strict):
    """Which fields become features; interactions name fields as `namespace.field`."""

    customer: list[Identifier] = Field(default_factory=list)
    context: list[Identifier] = Field(default_factory=list)
    treatment: list[Identifier] = Field(default_factory=lambda: ["id"], description="Of: id, group, kind.")
    interactions: list[Annotated[list[FieldRef], Field(min_length=2, max_length=3)]] = Field(default_factory=list)
    numeric: dict[FieldRef, NumericTransform] = Field(default_factory=dict)

    def refs(self) -> list[str]:
        """Every field a feature reads, qualified, in spec order (interactions included)."""
        out = [f"customer.{f}" for f in self.customer] + [f"context.{f}" for f in self.context]
        out += [f"treatment.{f}" for f in self.treatment]
        for parts in self.interactions:
            out.extend(parts)
        return list(dict.fromkeys(out))


class Reward(Strict):
    """Which outcomes make an impression a positive example, and with what weight.

    A positive outcome listed in `positive` is learned when it arrives, weighted by the strongest
    outcome so far (a later, stronger one adds only the difference, while the decision record
    lives); an impression with no positive within `non_response_after_s` of being shown is
    learned once as a negative with `negative_weight`. Lateness is judged by when the feedback
    happened, not when the learner reads it (engine.learning.worker). A purchase's weight grows with its value
    (`value_weight`, capped at `value_cap`) so that big baskets teach the model more than small.
    """

    positive: dict[PositiveOutcome, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {"accept": 1.0, "purchase": 1.0}
    )
    value_weight: float = Field(default=0.0, ge=0, le=10)
    value_cap: float = Field(default=1000.0, gt=0)
    non_response_after_s: int = Field(default=86_400, ge=1, le=90 * 86_400)
    negative_weight: float = Field(default=1.0, gt=0, le=1)

    def outcome_weight(self, outcome: str, value: float | None = None) -> float:
        """Example weight one outcome would give (0.0: not a positive outcome)."""
        weight = self.positive.get(outcome, 0.0)  # type: ignore[call-overload]
        if weight > 0 and outcome == "purchase" and value is not None and self.value_weight > 0:
            share = min(max(float(value), 0.0), self.value_cap) / self.value_cap
            weight *= 1.0 + self.value_weight * share
        return weight

    def label(self, outcomes: Iterable[tuple[str, float | None]]) -> tuple[bool, float]:
        """(label, weight) for one impression from the (outcome, value) pairs seen in its window."""
        best = max((self.outcome_weight(o, v) for o, v in outcomes), default=0.0)
        return (True, best) if best > 0 else (False, self.negative_weight)


class _Policy(Strict):
    """What every exploration entry may say besides its policy.

    `holdout_share` lets a placement leave the model's holdout (or hold out a different share):
    where one answer is acted on by a person, such as the single prompt on an agent's screen, a
    uniformly random treatment for holdout customers is the experiment the placement forbids.
    None: the model's `holdout_share` applies.
    """

    holdout_share: float | None = Field(
        default=None, ge=0, le=0.5, description="This placement's holdout share; unset: the model's `holdout_share`."
    )


class EpsilonGreedy(_Policy):
    policy: Literal["epsilon_greedy"]
    epsilon: float = Field(ge=0, le=1)


class Softmax(_Policy):
    policy: Literal["softmax"]
    temperature: float = Field(gt=0, le=100)


class Thompson(_Policy):
    policy: Literal["thompson"]


class Greedy(_Policy):
    policy: Literal["greedy"]


ExplorationPolicy = Annotated[EpsilonGreedy | Softmax | Thompson | Greedy, Field(discriminator="policy")]
POLICY_TAGS: tuple[str, ...] = ("epsilon_greedy", "softmax", "thompson", "greedy")


class Exploration(Strict):
    """The exploration policy per placement; placements not listed use `default`.

    A placement's entry may also set its own `holdout_share` (see `ModelSpec.exploration_for`).
    """

    default: ExplorationPolicy = EpsilonGreedy(policy="epsilon_greedy", epsilon=0.05)
    placements: dict[Identifier, ExplorationPolicy] = Field(default_factory=dict)

    @field_validator("default")
    @classmethod
    def _default_keeps_the_model_share(cls, policy: _Policy) -> _Policy:
        """The model's own `holdout_share` is already the share of every placement not listed, so a
        second one on `default` could only contradict it."""
        if policy.holdout_share is not None:
            raise ValueError(
                "`holdout_share` is not allowed on `default`: "
                "the model's top-level `holdout_share` is the share of every placement not listed"
            )
        return policy

    def for_placement(self, placement: str | None) -> EpsilonGreedy | Softmax | Thompson | Greedy:
        if placement is not None:
            found = self.placements.get(placement)
            if found is not None:
                return found
        return self.default


class ModelSpec(Strict):
    """One response model: learner, features, reward, exploration and how much to trust it.

    `placements` empty makes the spec the default model; otherwise it serves only the listed
    placements. Only enabled specs serve; see `active_model`.
    """

    id: Identifier
    description: str | None = None
    enabled: bool = True
    placements: list[Identifier] = Field(default_factory=list)
    learner: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    hash_bits: int = Field(default=18, ge=8, le=24)
    features: Features = Features()
    reward: Reward = Reward()
    evidence_threshold: float = Field(default=50.0, gt=0, le=1e7)
    exploration: Exploration = Exploration()
    holdout_share: float = Field(default=0.0, ge=0, le=0.5)

    @property
    def dimension(self) -> int:
        return 1 << self.hash_bits

    @property
    def fingerprint(self) -> str:
        """Digest of what gives exported weights their meaning (learner, features, hashing).

        Stored weights are only valid for the featurization they were trained with; a learner
        snapshot tagged with a different fingerprint must be discarded, not served.
        """
        payload = {
            "learner": self.learner,
            "hyperparameters": self.hyperparameters,
            "hash_bits": self.hash_bits,
            "features": self.features.model_dump(mode="json"),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def exploration_for(self, placement: str | None) -> tuple[EpsilonGreedy | Softmax | Thompson | Greedy, float]:
        """The placement's exploration policy and the holdout share that applies there.

        Both come from the one entry serving the placement, so a decision looks the placement up
        once; its own `holdout_share` wins, else the model's.
        """
        config = self.exploration.for_placement(placement)
        return config, self.holdout_share if config.holdout_share is None else config.holdout_share

    def evidence_weight(self, evidence: float) -> float:
        """Weight of the model's estimate against the prior: 0.5 exactly at `evidence_threshold`."""
        evidence = max(evidence, 0.0)
        return evidence / (evidence + self.evidence_threshold)


def active_model(specs: Sequence[ModelSpec], placement: str | None) -> ModelSpec | None:
    """The enabled spec that lists `placement`, else the enabled default spec, else None (prior only).

    The loader guarantees at most one enabled spec per placement and one enabled default,
    so the answer never depends on file order.
    """
    default: ModelSpec | None = None
    for spec in specs:
        if not spec.enabled:
            continue
        if placement is not None and placement in spec.placements:
            return spec
        if not spec.placements and default is None:
            default = spec
    return default


FieldDecl = Mapping[str, str] | Collection[str]
"""Declared fields of a namespace: a name → type mapping (enables the numeric check) or just names."""


def model_files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.rglob("*")) if p.suffix in (".yaml", ".yml") and p.is_file()]


def load_model_specs(
    directory: Path | str,
    *,
    customer_fields: FieldDecl | None = None,
    context_fields: FieldDecl | None = None,
) -> list[ModelSpec]:
    """Load every model spec (one per YAML file) under `directory`, or raise RuleSetError listing all problems.

    Pass the rule set's declared fields (`ruleset.vocabulary.namespaces["customer"]` and
    `["context"]`) so features naming undeclared fields are refused; None skips that check.
    An empty directory yields no specs: the engine then scores with priors only.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RuleSetError([RuleProblem(None, f"models directory not found: {directory}")])
    checker = _Checker({"customer": customer_fields, "context": context_fields})
    specs: list[tuple[YamlDocument, ModelSpec]] = []
    for path in model_files(directory):
        doc = read_yaml(path, str(path))
        if isinstance(doc, RuleProblem):
            checker.problems.append(doc)
            continue
        spec = checker.validate(doc)
        if spec is not None:
            checker.check(doc, spec)
            specs.append((doc, spec))
    checker.across(specs)
    if checker.problems:
        raise RuleSetError(checker.problems)
    return [spec for _, spec in specs]


def _describe(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return f"unknown key `{err['loc'][-1]}` (not allowed here)"
    if err["type"] == "missing":
        return f"missing required key `{err['loc'][-1]}`"
    loc = ".".join(str(x) for x in err["loc"])
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) and value is not None else ""
    return f"`{loc}`: {err['msg']}{shown}"


def _close(word: str, options: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


class _Checker:
    def __init__(self, declared: dict[str, FieldDecl | None]) -> None:
        self.declared = declared
        self.problems: list[RuleProblem] = []

    def add(self, doc: YamlDocument, loc: Loc, message: str, hint: str | None = None) -> None:
        pos = doc.pos_of(loc)
        self.problems.append(RuleProblem(pos, message, doc.line_text(pos.line), hint))

    def validate(self, doc: YamlDocument) -> ModelSpec | None:
        if not isinstance(doc.data, dict):
            self.add(doc, (), "a model spec file must be a mapping (one model per file)")
            return None
        try:
            return ModelSpec.model_validate(doc.data)
        except ValidationError as exc:
            for err in exc.errors():
                # Discriminated unions add the tag to the path; drop it to find the YAML node.
                loc: Loc = tuple(x for x in err["loc"] if x not in POLICY_TAGS)
                self.add(doc, loc, _describe({**err, "loc": loc}))
            return None

    def check(self, doc: YamlDocument, spec: ModelSpec) -> None:
        self._learner(doc, spec)
        self._features(doc, spec.features)
        if not spec.reward.positive or max(spec.reward.positive.values()) <= 0:
            self.add(doc, ("reward", "positive"), "no outcome counts as positive: the model could never learn a response")

    def _learner(self, doc: YamlDocument, spec: ModelSpec) -> None:
        from engine.learning.learners import LEARNERS

        factory = LEARNERS.get(spec.learner)
        if factory is None:
            names = ", ".join(sorted(LEARNERS))
            hint = _close(spec.learner, LEARNERS)
            self.add(doc, ("learner",), f"unknown learner `{spec.learner}` (known: {names})", hint)
            return
        try:
            factory(spec.hyperparameters)
        except ValidationError as exc:
            for err in exc.errors():
                loc: Loc = ("hyperparameters", *err["loc"])
                self.add(doc, loc, f"learner `{spec.learner}`: " + _describe({**err, "loc": loc}))
        except (TypeError, ValueError) as exc:
            self.add(doc, ("hyperparameters",), f"learner `{spec.learner}`: {exc}")

    def _field(self, doc: YamlDocument, loc: Loc, ns: str, name: str) -> bool:
        """Whether `ns.name` is a field a feature may read; reports it if not."""
        if ns == "treatment":
            if name not in TREATMENT_FIELDS:
                self.add(doc, loc, f"unknown treatment field `{name}`", f"treatment features are {', '.join(TREATMENT_FIELDS)}")
                return False
            return True
        declared = self.declared.get(ns)
        if declared is None or name in declared:
            return True
        hint = _close(name, declared) or f"declare it under `fields.{ns}` in the rule set"
        self.add(doc, loc, f"unknown {ns} field `{name}` (not declared in the rule set)", hint)
        return False

    def _type_of(self, ns: str, name: str) -> str | None:
        declared = self.declared.get(ns)
        return declared.get(name) if isinstance(declared, Mapping) else None

    def _features(self, doc: YamlDocument, features: Features) -> None:
        base: Loc = ("features",)
        used: dict[str, Loc] = {}
        for ns in ("customer", "context", "treatment"):
            names: list[str] = getattr(features, ns)
            seen: set[str] = set()
            for i, name in enumerate(names):
                loc = (*base, ns, i)
                if name in seen:
                    self.add(doc, loc, f"`{ns}.{name}` is listed twice")
                    continue
                seen.add(name)
                if self._field(doc, loc, ns, name):
                    used.setdefault(f"{ns}.{name}", loc)
        seen_sets: dict[frozenset[str], int] = {}
        for i, parts in enumerate(features.interactions):
            loc = (*base, "interactions", i)
            if len(set(parts)) != len(parts):
                self.add(doc, loc, "an interaction names the same field twice")
                continue
            key = frozenset(parts)
            if key in seen_sets:
                self.add(doc, loc, f"duplicate interaction (same fields as interaction {seen_sets[key]})")
                continue
            seen_sets[key] = i
            for j, ref in enumerate(parts):
                ns, name = ref.split(".", 1)
                if self._field(doc, (*loc, j), ns, name):
                    used.setdefault(ref, (*loc, j))
        for ref, transform_loc in ((r, (*base, "numeric", r)) for r in features.numeric):
            ns, name = ref.split(".", 1)
            if ns == "treatment":
                self.add(doc, transform_loc, f"`{ref}` is categorical: treatment fields cannot be numeric")
            elif ref not in used:
                self.add(doc, transform_loc, f"numeric transform for `{ref}`, which no feature uses", _close(ref, used))
        for ref, loc in used.items():
            ns, name = ref.split(".", 1)
            if ref not in features.numeric and self._type_of(ns, name) in NUMERIC_TYPES:
                self.add(
                    doc,
                    loc,
                    f"`{ref}` is a {self._type_of(ns, name)} field and needs a numeric transform",
                    f"add `numeric: {{{ref}: {{scale: ...}}}}` (or `log1p: true`) under `features`",
                )
        if not used:
            self.add(doc, base, "a model needs at least one feature")

    def across(self, specs: list[tuple[YamlDocument, ModelSpec]]) -> None:
        """Cross-file rules: unique ids, one enabled default, one enabled spec per placement."""
        ids: dict[str, SourcePos] = {}
        default: SourcePos | None = None
        claimed: dict[str, SourcePos] = {}
        for doc, spec in specs:
            pos = doc.pos_of(("id",))
            if spec.id in ids:
                self.add(doc, ("id",), f"duplicate model id `{spec.id}` (first defined at {ids[spec.id]})")
                continue
            ids[spec.id] = pos
            if not spec.enabled:
                continue
            if not spec.placements:
                if default is not None:
                    self.add(
                        doc,
                        ("id",),
                        f"two enabled default models: `{spec.id}` and the one at {default}",
                        "set `enabled: false` on one, or give it `placements:`",
                    )
                else:
                    default = pos
            for i, placement in enumerate(spec.placements):
                if placement in claimed:
                    self.add(
                        doc,
                        ("placements", i),
                        f"placement `{placement}` is already served by the enabled model at {claimed[placement]}",
                    )
                else:
                    claimed[placement] = pos
