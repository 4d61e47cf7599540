"""Turn a directory of rule files into a compiled RuleSet, or refuse it with every problem found.

A rule set is all or nothing: one bad condition anywhere refuses the whole set, because a
half-loaded set would serve offers its authors never approved.
"""

from __future__ import annotations

import difflib
import hashlib
import subprocess
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from engine.equity.config import EquityConfig
from engine.errors import RuleProblem, RuleSetError, SourcePos
from engine.rules.conditions import Condition, ConditionError, compile_condition
from engine.rules.ruleset import CompiledTreatment, RuleSet
from engine.rules.schema import (
    Arbitration,
    ContactPolicy,
    Experiments,
    Fields,
    FrequencyCapPolicy,
    Question,
    RuleFile,
    SuppressionPolicy,
    Treatment,
    Trigger,
)
from engine.rules.triggers import CompiledTrigger
from engine.rules.vocabulary import BUILTIN_EVENT_ATTRIBUTES, REQUEST_EVENT_FIELDS, FieldType, Vocabulary
from engine.rules.yamlsource import Loc, YamlDocument, read_yaml

TEST_SUFFIXES = ("_test.yaml", "_test.yml")


def rule_files(directory: Path) -> list[Path]:
    """Rule files in load order (sorted, so the version hash is stable); tests excluded."""
    files = [p for p in sorted(directory.rglob("*")) if p.suffix in (".yaml", ".yml") and p.is_file()]
    return [p for p in files if not p.name.endswith(TEST_SUFFIXES)]


def _describe_pydantic_error(err: Any) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key `{err['loc'][-1]}` (not allowed here)"
    if err["type"] == "missing":
        return f"missing required key `{err['loc'][-1]}`"
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) and value is not None else ""
    return f"`{loc}`: {err['msg']}{shown}"


def _problems(doc: YamlDocument, exc: ValidationError, prefix: Loc = ()) -> list[RuleProblem]:
    problems = []
    for err in exc.errors():
        # Discriminated unions add the tag to the path; drop it to find the YAML node.
        loc: Loc = (*prefix, *(x for x in err["loc"] if x not in ("frequency_cap", "suppression")))
        pos = doc.pos_of(loc)
        problems.append(RuleProblem(pos, _describe_pydantic_error({**err, "loc": loc}), doc.line_text(pos.line)))
    return problems


_ITEMS: dict[str, TypeAdapter[Any]] = {
    "treatments": TypeAdapter(Treatment),
    "contact_policies": TypeAdapter(ContactPolicy),
    "triggers": TypeAdapter(Trigger),
    "questions": TypeAdapter(Question),
}


def _validate(doc: YamlDocument) -> tuple[RuleFile | None, list[RuleProblem]]:
    """Validate a file item by item, so one bad treatment does not hide the errors of the others
    (their conditions are still compiled and checked)."""
    if doc.data is None:
        return RuleFile(), []
    if not isinstance(doc.data, dict):
        return None, [RuleProblem(doc.pos_of(()), "a rule file must be a mapping of sections")]
    problems: list[RuleProblem] = []
    sections = dict(doc.data)
    items: dict[str, list[Any]] = {}
    for name, adapter in _ITEMS.items():
        raw = sections.pop(name, None)
        if raw is None:
            continue
        if not isinstance(raw, list):
            pos = doc.pos_of((name,))
            problems.append(RuleProblem(pos, f"`{name}` must be a list", doc.line_text(pos.line)))
            continue
        items[name] = []
        for i, item in enumerate(raw):
            try:
                items[name].append(adapter.validate_python(item))
            except ValidationError as exc:
                problems.extend(_problems(doc, exc, (name, i)))
                items[name].append(None)  # keeps indexes aligned with the file for positions
    try:
        rest = RuleFile.model_validate(sections)
    except ValidationError as exc:
        problems.extend(_problems(doc, exc))
        rest = RuleFile()
    return rest.model_copy(update={k: v for k, v in items.items()}), problems


QUESTION_GROUP = "questions"


class _Compiler:
    def __init__(self, vocab: Vocabulary, equity: EquityConfig) -> None:
        self.vocab = vocab
        self.equity = equity
        self.problems: list[RuleProblem] = []

    def target_rank(self, doc: YamlDocument, loc: Loc, tier: str | None) -> int | None:
        """The tier's rank, -1 for none, or None (reported) for a tier the equity section lacks."""
        if tier is None:
            return -1
        if tier in self.equity.tier_names:
            return self.equity.tier_rank(tier)
        pos = doc.pos_of(loc)
        tiers = ", ".join(self.equity.tier_names)
        self.problems.append(RuleProblem(pos, f"unknown tier `{tier}`", doc.line_text(pos.line), hint=f"tiers are: {tiers}"))
        return None

    def condition(self, doc: YamlDocument, loc: Loc, source: str, event_type: str | None = None) -> Condition | None:
        start = doc.expression_start(loc)
        try:
            return compile_condition(source, self.vocab, pos=start, source_line=doc.line_text(start.line), event_type=event_type)
        except ConditionError as exc:
            self.problems.extend(exc.problems)
            return None

    def treatment(self, doc: YamlDocument, index: int, t: Treatment) -> CompiledTreatment | None:
        loc: Loc = ("treatments", index)
        eligibility = self.condition(doc, (*loc, "eligibility"), t.eligibility) if t.eligibility else None
        weights = []
        for i, w in enumerate(t.context_weights):
            compiled = self.condition(doc, (*loc, "context_weights", i, "when"), w.when)
            if compiled is not None:
                weights.append((compiled, w.weight))
        rank = self.target_rank(doc, (*loc, "target_tier"), t.target_tier)
        if (t.eligibility and eligibility is None) or len(weights) != len(t.context_weights) or rank is None:
            return None
        return CompiledTreatment(
            id=t.id,
            kind=t.kind,
            group=t.group,
            channels=frozenset(t.channels),
            placements=frozenset(t.placements),
            value=t.value,
            lever=t.lever,
            prior_alpha=t.prior.alpha,
            prior_beta=t.prior.beta,
            cap_per_day=t.caps.per_day,
            cap_per_week=t.caps.per_week,
            cap_total=t.caps.total,
            eligibility=eligibility,
            context_weights=tuple(weights),
            content=t.content,
            description=t.description,
            target_rank=rank,
            tier_uplift=t.tier_uplift if t.target_tier else 0.0,
            cost_per_show=t.cost.per_show,
            cost_per_accept=t.cost.per_accept,
            brand=t.brand,
            campaign=t.campaign,
        )

    def question(self, doc: YamlDocument, index: int, q: Question) -> CompiledTreatment | None:
        """A question is a prompt treatment: eligible while its field is unanswered, worth its value
        times its relevance (the same priority formula, so it competes with other prompts)."""
        loc: Loc = ("questions", index)
        if q.field not in self.vocab.namespaces["customer"]:
            pos = doc.pos_of((*loc, "field"))
            self.problems.append(
                RuleProblem(
                    pos, f"unknown customer field `{q.field}`", doc.line_text(pos.line), hint="declare it under `fields.customer`"
                )
            )
            return None
        unanswered = compile_condition(f"customer.{q.field} == None", self.vocab)
        weights = []
        for i, w in enumerate(q.relevance):
            compiled = self.condition(doc, (*loc, "relevance", i, "when"), w.when)
            if compiled is None:
                return None
            weights.append((compiled, w.weight))
        return CompiledTreatment(
            id=q.id,
            kind="prompt",
            group=QUESTION_GROUP,
            channels=frozenset(q.channels),
            placements=frozenset(q.placements),
            value=q.value,
            lever=1.0,
            prior_alpha=1.0,
            prior_beta=1.0,
            cap_per_day=None,
            cap_per_week=None,
            cap_total=None,
            eligibility=unanswered,
            context_weights=tuple(weights),
            content={"question": q.text, "field": q.field, "question_id": q.id},
            description=q.text,
        )


def _git_revision(directory: Path) -> str | None:
    try:
        out = subprocess.run(
            # The last commit that touched the rules, not the repository's HEAD: a code-only
            # commit must not look like a new rule set.
            ["git", "-C", str(directory), "log", "-1", "--format=%h", "--abbrev=12", "--", "."],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_ruleset(directory: Path | str) -> RuleSet:
    """Load, validate and compile every rule file under `directory`.

    Raises RuleSetError listing all problems (YAML syntax, schema, conditions, cross-references).
    The version is a hash of the files' names and contents, plus the git revision when known.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RuleSetError([RuleProblem(None, f"rules directory not found: {directory}")])
    files = rule_files(directory)
    if not files:
        raise RuleSetError([RuleProblem(None, f"no rule files (*.yaml) in {directory}")])

    problems: list[RuleProblem] = []
    digest = hashlib.sha256()
    parsed: list[tuple[YamlDocument, RuleFile]] = []
    for path in files:
        name = str(path.relative_to(directory))
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        doc = read_yaml(path, str(path))
        if isinstance(doc, RuleProblem):
            problems.append(doc)
            continue
        rule_file, errs = _validate(doc)
        problems.extend(errs)
        if rule_file is not None:
            parsed.append((doc, rule_file))

    fields, arbitration, equity, experiments = _singletons(parsed, problems)
    event_attributes = _event_attributes(parsed, problems)
    flags, counters = _trigger_names(parsed)
    questions = {q.id: q.field for _, rf in parsed for q in rf.questions if q is not None}
    vocab = Vocabulary.build(
        fields.customer, fields.context, flags=flags, counters=counters, questions=questions, event_attributes=event_attributes
    )
    compiler = _Compiler(vocab, equity)
    triggers = _compile_triggers(parsed, vocab, compiler, problems)
    treatments: list[CompiledTreatment] = []
    seen: dict[str, SourcePos] = {}
    frequency: list[FrequencyCapPolicy] = []
    suppression: list[SuppressionPolicy] = []
    for doc, rf in parsed:
        for i, t in enumerate(rf.treatments):
            if t is None:
                continue  # refused by the schema; already reported
            pos = doc.pos_of(("treatments", i, "id"))
            if t.id in seen:
                problems.append(
                    RuleProblem(pos, f"duplicate treatment id `{t.id}` (first defined at {seen[t.id]})", doc.line_text(pos.line))
                )
                continue
            seen[t.id] = pos
            compiled = compiler.treatment(doc, i, t)
            if compiled is not None:
                treatments.append(compiled)
        for i, q in enumerate(rf.questions):
            if q is None:
                continue
            pos = doc.pos_of(("questions", i, "id"))
            if q.id in seen:
                problems.append(RuleProblem(pos, f"duplicate treatment or question id `{q.id}`", doc.line_text(pos.line)))
                continue
            seen[q.id] = pos
            compiled = compiler.question(doc, i, q)
            if compiled is not None:
                treatments.append(compiled)
        for i, p in enumerate(rf.contact_policies):
            if p is None:
                continue
            if isinstance(p, SuppressionPolicy):
                if p.after_event not in vocab.event_types:
                    pos = doc.pos_of(("contact_policies", i, "after_event"))
                    problems.append(
                        RuleProblem(
                            pos,
                            f"unknown event type `{p.after_event}`",
                            doc.line_text(pos.line),
                            hint="declare it under `event_types:`",
                        )
                    )
                suppression.append(p)
            else:
                frequency.append(p)
    problems.extend(compiler.problems)
    problems.extend(_unknown_fallbacks(parsed, arbitration, seen))
    if problems:
        raise RuleSetError(problems)

    version = digest.hexdigest()[:16]
    revision = _git_revision(directory)
    if revision:
        version = f"{version}@{revision}"
    return RuleSet(
        version=version,
        treatments=tuple(treatments),
        arbitration=arbitration,
        frequency_policies=tuple(frequency),
        suppression_policies=tuple(suppression),
        vocabulary=vocab,
        source_dir=str(directory),
        triggers=tuple(triggers),
        equity=equity,
        experiments=experiments,
    )


def _unknown_fallbacks(
    parsed: list[tuple[YamlDocument, RuleFile]], arbitration: Arbitration, known: dict[str, SourcePos]
) -> list[RuleProblem]:
    """Fallback ids that name no treatment or question, each pointed at where it is written."""
    doc = next((doc for doc, rf in parsed if rf.arbitration is arbitration), None)
    problems: list[RuleProblem] = []
    for i, tid in enumerate(arbitration.fallback):
        if tid in known:
            continue
        close = difflib.get_close_matches(tid, sorted(known), n=1)
        hint = f"did you mean `{close[0]}`?" if close else None
        message = f"arbitration.fallback names unknown treatment `{tid}`"
        if doc is None:  # only the built-in default arbitration has no file, and it names no fallback
            problems.append(RuleProblem(None, message, hint=hint))
            continue
        pos = doc.pos_of(("arbitration", "fallback", i))
        problems.append(RuleProblem(pos, message, doc.line_text(pos.line), hint=hint))
    return problems


def _trigger_names(parsed: list[tuple[YamlDocument, RuleFile]]) -> tuple[list[str], list[str]]:
    """Flags and counters that some trigger maintains: the names conditions may read."""
    flags: list[str] = []
    counters: list[str] = []
    for _, rf in parsed:
        for t in rf.triggers:
            if t is None:
                continue
            threshold = t.increment.then if t.increment is not None else None
            for actions in (t, t.schedule.then if t.schedule else None, threshold):
                if actions is None:
                    continue
                if actions.set_flag is not None:
                    flags.append(actions.set_flag.name)
                if actions.increment is not None:
                    counters.append(actions.increment.counter)
    return flags, counters


def _compile_triggers(
    parsed: list[tuple[YamlDocument, RuleFile]], vocab: Vocabulary, compiler: _Compiler, problems: list[RuleProblem]
) -> list[CompiledTrigger]:
    out: list[CompiledTrigger] = []
    seen: set[str] = set()
    for doc, rf in parsed:
        for i, t in enumerate(rf.triggers):
            if t is None:
                continue
            loc: Loc = ("triggers", i)
            if t.id in seen:
                pos = doc.pos_of((*loc, "id"))
                problems.append(RuleProblem(pos, f"duplicate trigger id `{t.id}`", doc.line_text(pos.line)))
                continue
            seen.add(t.id)
            for where, event_type in [((*loc, "event"), t.event)] + [
                ((*loc, "schedule", "cancel_on", j), e) for j, e in enumerate(t.schedule.cancel_on if t.schedule else [])
            ]:
                if event_type not in vocab.event_types:
                    pos = doc.pos_of(where)
                    problems.append(
                        RuleProblem(
                            pos,
                            f"unknown event type `{event_type}`",
                            doc.line_text(pos.line),
                            hint="declare it under `event_types:`",
                        )
                    )
            later = t.schedule.then.increment if t.schedule else None
            if later is not None and later.at is not None:
                # Only an event's own increment is counted back (engine.rules.triggers): a
                # timer's threshold would never be acted on, so it is refused, not ignored.
                pos = doc.pos_of((*loc, "schedule", "then", "increment", "at"))
                problems.append(
                    RuleProblem(
                        pos,
                        "`at` and `then` act on a trigger's own increment, not on one in a timer's `then`",
                        doc.line_text(pos.line),
                        hint="move the increment and its threshold to a trigger on the event itself",
                    )
                )
            # An unknown event type is reported above; its attributes would only add noise.
            event_type = t.event if t.event in vocab.event_types else None
            when = compiler.condition(doc, (*loc, "when"), t.when, event_type) if t.when else None
            if when is not None and (when.functions or any(not n.startswith("event.") for n in when.names)):
                pos = doc.expression_start((*loc, "when"))
                problems.append(
                    RuleProblem(
                        pos,
                        "a trigger condition may only read `event.*` (triggers fire as events arrive, without reading state)",
                        doc.line_text(pos.line),
                    )
                )
            out.append(CompiledTrigger(t, when))
    return out


SINGLETONS = ("fields", "arbitration", "equity", "experiments")


def _event_attributes(
    parsed: list[tuple[YamlDocument, RuleFile]], problems: list[RuleProblem]
) -> dict[str, dict[str, FieldType]]:
    """Event type -> attributes declared for it beyond the built-in ones, merged across files.

    An attribute keeps one type: two types for it would make one of the conditions reading it
    silently false, so a second, different type is refused where it is written.
    """
    out: dict[str, dict[str, FieldType]] = {}
    first: dict[tuple[str, str], SourcePos] = {}
    for doc, rf in parsed:
        for i, declaration in enumerate(rf.event_types):
            declared = out.setdefault(declaration.name, {})
            for attribute, kind in declaration.attributes.items():
                pos = doc.pos_of(("event_types", i, "attributes", attribute))
                builtin = BUILTIN_EVENT_ATTRIBUTES.get(declaration.name, {}).get(attribute)
                earlier = declared.get(attribute)
                if attribute in REQUEST_EVENT_FIELDS:
                    message = f"`{attribute}` is part of every event; it cannot be declared as an attribute"
                elif builtin is not None and builtin != kind:
                    message = f"`{declaration.name}` attribute `{attribute}` is built in as {builtin}, not {kind}"
                elif earlier is not None and earlier != kind:
                    where = first[(declaration.name, attribute)]
                    message = f"`{declaration.name}` attribute `{attribute}` is declared as {earlier} at {where}, not {kind}"
                else:
                    declared[attribute] = kind
                    first.setdefault((declaration.name, attribute), pos)
                    continue
                problems.append(RuleProblem(pos, message, doc.line_text(pos.line)))
    return out


def _singletons(
    parsed: list[tuple[YamlDocument, RuleFile]], problems: list[RuleProblem]
) -> tuple[Fields, Arbitration, EquityConfig, Experiments]:
    """Sections that may appear in one file only (SINGLETONS)."""
    found: dict[str, Any] = {}
    for doc, rf in parsed:
        for section in SINGLETONS:
            value = getattr(rf, section)
            if value is None:
                continue
            if section in found:
                pos = doc.pos_of((section,))
                problems.append(
                    RuleProblem(pos, f"section `{section}` is defined in more than one file", doc.line_text(pos.line))
                )
            else:
                found[section] = value
    return (
        found.get("fields") or Fields(),
        found.get("arbitration") or Arbitration(),
        found.get("equity") or EquityConfig.default(),
        found.get("experiments") or Experiments(),
    )
