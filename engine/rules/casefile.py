"""Rule test files (`*_test.yaml` beside the rules): what a case says, and reading one with positions.

A marketer writes a customer as they would describe one ("complained two days ago, has two
items in the cart, the delay flag has 20 hours left") and what the engine should then do
("service_recovery first, credit_card_offer suppressed by complaint_cooldown"). Everything a
case names is checked against the rule set before anything runs, so a misspelt treatment id
is an error at its `file:line`, not an expectation that passes because it never matched.

A file::

    now: 2026-11-23T10:00:00Z        # optional; the default is DEFAULT_NOW
    cases:
      - name: a complaint suppresses sales for a week
        now: 2026-11-24T08:00:00Z    # optional, per case (ISO-8601; UTC when no offset is given)
        request: {channel: mobile_app, placement: null, context: {device: ios}}
        customer:
          profile: {tier: gold, age: 41}
          events:                    # any order: each happened `ago` before now
            - {type: complaint, ago: 2d, channel: social, attributes: {topic: wifi}}
          cart: {SKU-1: {qty: 2, price: 60}}
          flags: {delayed_flight: 20h}          # time left before it expires (-1h: expired an hour ago)
          counters: {premium_seat_views: [1h, 2h, 3h]}   # how long ago each increment was
          caps: {day: {apology_upgrade: 2}, week: {sales: 9}, total: {free_sample: 1}}
        expect:
          first: service_recovery
          chosen: [service_recovery]
          suppressed: {credit_card_offer: complaint_cooldown}

Expectations (lists are order-insensitive): `chosen`, `first`, `exactly` (the whole answer, in
order), `not_chosen`, `eligible` and `not_eligible` (offered here, and its condition held or
not), `capped` (by its own caps or a group budget; a list, or `id: frequency_cap policy`),
`suppressed` (a list, or `id: suppression policy`), `outranked` (suitable, but the answer was
full), `fallback` (true or false) and `tier` (the customer's equity tier then).

Durations are a number and a unit, combinable: `30m`, `2h`, `3d`, `1w`, `1d12h`, `45s`.
Events run through the rule set's triggers in time order, as the store would apply them
(flags set and cleared, counters incremented, timers fired when due before `now`); the
`flags` and `counters` listed are added on top. Events make the history (`last`, the recent
interactions, complaint topics, value facts); the profile and the cart are stated as they are
now and are not replayed from events. `caps` are the impressions the store has counted in each
window (`week` includes today's): a treatment id counts for it and for its group, a group name
for the group alone (a treatment id wins over a group of the same name).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from engine.clock import MS_PER_DAY, MS_PER_HOUR
from engine.decision.events import effects_of
from engine.domain import CUSTOMER_ID_PATTERN, Event
from engine.errors import InvalidInput, RuleProblem
from engine.rules.ruleset import RuleSet
from engine.rules.schema import ChannelName
from engine.rules.yamlsource import Loc, YamlDocument, read_yaml
from engine.validation import Strict

DEFAULT_NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
"""A Monday morning, so day and week caps start fresh; cases that care about time state `now`."""
DEFAULT_CUSTOMER_ID = "rule-test-customer"

_UNIT_MS = {"w": 7 * MS_PER_DAY, "d": MS_PER_DAY, "h": MS_PER_HOUR, "m": 60_000, "s": 1_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
DURATION_HINT = "write a number and a unit, such as 30m, 2h, 3d or 1d12h (units: w, d, h, m, s)"


def parse_duration(text: str) -> int:
    """Milliseconds of `3d`, `1d12h` or `-2h`; ValueError for anything else (a bare number too:
    `3` could be minutes or days, so a unit is required)."""
    body = text.strip()
    sign = -1 if body.startswith("-") else 1
    body = body.lstrip("-")
    if not body or _DURATION.sub("", body):
        raise ValueError(f"bad duration `{text}`")
    return sign * round(sum(float(n) * _UNIT_MS[u] for n, u in _DURATION.findall(body)))


def _duration(signed: bool) -> Any:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise PydanticCustomError("duration", "bad duration `{value}`", {"value": value})
        try:
            ms = parse_duration(str(value))
        except ValueError:
            raise PydanticCustomError("duration", "bad duration `{value}`", {"value": value}) from None
        if ms < 0 and not signed:
            raise PydanticCustomError("duration", "bad duration `{value}`: it must not be negative", {"value": value})
        return ms

    return BeforeValidator(parse)


Ago = Annotated[int, _duration(signed=False)]
"""How long before `now` something happened, in milliseconds."""
TimeLeft = Annotated[int, _duration(signed=True)]
"""How long until a flag expires, in milliseconds; negative: it expired that long ago."""


def _ids(value: Any) -> Any:
    """`[a, b]` reads as `{a: null, b: null}`: the policy that drops a treatment is optional."""
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise PydanticCustomError("ids", "expected a list of treatment ids or a mapping of id to policy id")
        return dict.fromkeys(value)
    return value


IdsWithPolicy = Annotated[dict[str, str | None], BeforeValidator(_ids)]


class CaseEvent(Strict):
    type: str
    ago: Ago
    channel: ChannelName | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class CartItem(Strict):
    qty: int = Field(default=1, ge=1, le=10_000)
    price: float = Field(default=0.0, ge=0)
    name: str | None = None


class CapCounts(Strict):
    """Impressions counted per window, by treatment id or group name."""

    day: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    week: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    total: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)


class CaseCustomer(Strict):
    profile: dict[str, Any] = Field(default_factory=dict)
    events: list[CaseEvent] = Field(default_factory=list)
    cart: dict[str, CartItem] = Field(default_factory=dict)
    flags: dict[str, TimeLeft] = Field(default_factory=dict)
    counters: dict[str, list[Ago]] = Field(default_factory=dict)
    caps: CapCounts = CapCounts()


class CaseRequest(Strict):
    """As sent to `POST /v1/decisions`; the customer id is optional here."""

    customer_id: str = Field(default=DEFAULT_CUSTOMER_ID, pattern=CUSTOMER_ID_PATTERN)
    channel: ChannelName
    placement: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    event: dict[str, Any] | None = None
    limit: int | None = Field(default=None, ge=1, le=50)


class Expect(Strict):
    """What the decision must show. Every list is order-insensitive except `exactly`."""

    chosen: list[str] = Field(default_factory=list, description="In the answer.")
    first: str | None = Field(default=None, description="The top treatment of the answer.")
    exactly: list[str] | None = Field(default=None, description="The whole answer, in order.")
    not_chosen: list[str] = Field(default_factory=list, description="Not in the answer, for whatever reason.")
    eligible: list[str] = Field(default_factory=list, description="Offered here and its eligibility condition holds.")
    not_eligible: list[str] = Field(default_factory=list, description="Offered here, dropped by its eligibility condition.")
    capped: IdsWithPolicy = Field(
        default_factory=dict, description="Dropped by its own caps, or by a group budget (then the frequency_cap policy)."
    )
    suppressed: IdsWithPolicy = Field(default_factory=dict, description="Dropped by a suppression (optionally: which one).")
    outranked: list[str] = Field(default_factory=list, description="Suitable, but others filled the answer.")
    fallback: bool | None = None
    tier: str | None = Field(default=None, description="The customer's equity tier at decision time.")

    def treatment_ids(self) -> set[str]:
        ids = {*self.chosen, *self.not_chosen, *self.eligible, *self.not_eligible, *self.capped, *self.suppressed}
        ids.update(self.outranked)
        ids.update(self.exactly or ())
        if self.first is not None:
            ids.add(self.first)
        return ids

    def is_empty(self) -> bool:
        return not self.treatment_ids() and self.fallback is None and self.tier is None


class Case(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    now: datetime | None = None
    request: CaseRequest
    customer: CaseCustomer = CaseCustomer()
    expect: Expect


class CaseFileHeader(Strict):
    now: datetime | None = None
    cases: list[Any] = Field(min_length=1)
    """Validated one by one, so one bad case does not hide the others' errors."""


_CASE = TypeAdapter(Case)

_MODEL_OF_KEY: dict[str, type[BaseModel]] = {
    "request": CaseRequest,
    "customer": CaseCustomer,
    "expect": Expect,
    "caps": CapCounts,
    "events": CaseEvent,
    "cart": CartItem,
}


@dataclass(frozen=True, slots=True)
class LoadedCase:
    case: Case
    file: str
    line: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class CaseFileLoad:
    """The cases of one file that can run, and the problems of those that cannot."""

    file: str
    cases: tuple[LoadedCase, ...]
    problems: tuple[RuleProblem, ...]


def epoch_ms(moment: datetime) -> int:
    """A naive time is read as UTC, like every time in the engine."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def did_you_mean(word: str, known: list[str] | set[str] | frozenset[str]) -> str | None:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f"did you mean `{close[0]}`?" if close else None


def _allowed_keys(loc: Loc) -> list[str]:
    """Keys allowed where an unknown key sits: the model of the nearest enclosing known section."""
    for part in reversed(loc[:-1]):
        if isinstance(part, str) and part in _MODEL_OF_KEY:
            return list(_MODEL_OF_KEY[part].model_fields)
    return list(Case.model_fields) if "cases" in loc else list(CaseFileHeader.model_fields)


def _schema_problems(doc: YamlDocument, exc: ValidationError, prefix: Loc = ()) -> list[RuleProblem]:
    problems = []
    for err in exc.errors():
        # A function validator adds a step named after the function to the path; it is no YAML key.
        loc: Loc = (*prefix, *(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-"))))
        pos = doc.pos_of(loc)
        hint = None
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            message = f"unknown key `{key}` (not allowed here)"
            hint = did_you_mean(key, _allowed_keys(loc)) or "allowed here: " + ", ".join(_allowed_keys(loc))
        elif err["type"] == "missing":
            message = f"missing required key `{loc[-1]}`"
        elif err["type"] == "duration":
            message = err["msg"]
            hint = DURATION_HINT
        else:
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict | list) and value is not None else ""
            message = f"`{'.'.join(str(x) for x in loc)}`: {err['msg']}{shown}"
        problems.append(RuleProblem(pos, message, doc.line_text(pos.line), hint))
    return problems


def _problem(doc: YamlDocument, loc: Loc, message: str, hint: str | None = None) -> RuleProblem:
    pos = doc.pos_of(loc)
    return RuleProblem(pos, message, doc.line_text(pos.line), hint)


def load_case_file(path: Path, rules: RuleSet, display_name: str | None = None) -> CaseFileLoad:
    """Validate a test file item by item (one bad case does not hide the others' errors) and check
    every name it uses against `rules`. Cases with a problem are left out of `cases`, and all of
    them when the file's own keys (`now`, `cases`) are refused."""
    name = display_name if display_name is not None else str(path)
    doc = read_yaml(path, name)
    if isinstance(doc, RuleProblem):
        return CaseFileLoad(name, (), (doc,))
    if not isinstance(doc.data, dict):
        return CaseFileLoad(name, (), (_problem(doc, (), "a test file must be a mapping with a `cases:` list"),))
    problems: list[RuleProblem] = []
    runnable = True
    try:
        header = CaseFileHeader.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_schema_problems(doc, exc))
        # Still check the cases, so every error shows up in one run; none runs, as the file's
        # `now` may be what was refused.
        raw_cases = doc.data.get("cases")
        header = CaseFileHeader.model_construct(now=None, cases=raw_cases if isinstance(raw_cases, list) else [])
        runnable = False
    default_now = header.now or DEFAULT_NOW
    loaded: list[LoadedCase] = []
    names: dict[str, int] = {}
    for i, raw in enumerate(header.cases):
        loc: Loc = ("cases", i)
        checker = CaseChecker(doc, loc, rules, raw)
        try:
            case = _CASE.validate_python(raw)
        except ValidationError as exc:
            problems.extend(_schema_problems(doc, exc, loc))
            problems.extend(checker.check_sections(raw, exc, epoch_ms(default_now)))
            continue
        line = doc.pos_of(loc).line
        now_ms = epoch_ms(case.now or default_now)
        found = checker.check(case, now_ms)
        if case.name in names:
            found.append(_problem(doc, (*loc, "name"), f"duplicate case name `{case.name}` (first at line {names[case.name]})"))
        names.setdefault(case.name, line)
        problems.extend(found)
        if not found and runnable:
            loaded.append(LoadedCase(case, name, line, now_ms))
    problems.sort(key=lambda p: (p.pos.line, p.pos.column) if p.pos else (0, 0))
    return CaseFileLoad(name, tuple(loaded), tuple(problems))


def _id_locs(raw: Any, loc: Loc) -> Iterator[tuple[str, Loc]]:
    """Each id of a list (`[a, b]`) or mapping (`{a: policy}`) with where it is written."""
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if isinstance(item, str):
                yield item, (*loc, i)
    elif isinstance(raw, dict):
        for key in raw:
            yield str(key), (*loc, str(key))
    elif isinstance(raw, str):
        yield raw, loc


def _get(raw: Any, *path: str) -> Any:
    for key in path:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw


_TYPE_CHECKS: dict[str, tuple[type, ...]] = {"number": (int, float), "string": (str,), "bool": (bool,), "list": (list,)}


class CaseChecker:
    """Checks one validated case against the rule set; every problem points into the YAML."""

    def __init__(self, doc: YamlDocument, loc: Loc, rules: RuleSet, raw: Any) -> None:
        self.doc = doc
        self.loc = loc
        self.rules = rules
        self.raw = raw
        self.problems: list[RuleProblem] = []

    def add(self, loc: Loc, message: str, hint: str | None = None) -> None:
        self.problems.append(_problem(self.doc, (*self.loc, *loc), message, hint))

    def check(self, case: Case, now_ms: int) -> list[RuleProblem]:
        self.request(case.request)
        self.customer(case.customer, case.request.customer_id, now_ms)
        self.expect(case.expect)
        return self.problems

    def check_sections(self, raw: Any, exc: ValidationError, now_ms: int) -> list[RuleProblem]:
        """Check what is well-formed in a refused case, so one run reports a misspelt treatment id
        beside a bad duration instead of after it is fixed. Keys with schema errors are left out."""
        if not isinstance(raw, dict):
            return []
        refused = [err["loc"][:2] for err in exc.errors() if len(err["loc"]) >= 2]
        sections: dict[str, type[BaseModel]] = {"request": CaseRequest, "customer": CaseCustomer, "expect": Expect}
        for name, model in sections.items():
            body = raw.get(name)
            if not isinstance(body, dict):
                continue
            kept = {k: v for k, v in body.items() if k in model.model_fields and (name, k) not in refused}
            try:
                section = model.model_validate(kept)
            except ValidationError:
                continue  # a required key was refused: nothing more to say about this section
            if isinstance(section, CaseRequest):
                self.request(section)
            elif isinstance(section, CaseCustomer):
                self.customer(section, DEFAULT_CUSTOMER_ID, now_ms)
            elif isinstance(section, Expect) and (kept or not body):
                self.expect(section, complete=len(kept) == len(body))
        return self.problems

    def fields(self, values: Mapping[str, Any], namespace: str, loc: Loc) -> None:
        declared = self.rules.vocabulary.namespaces.get(namespace, {})
        for key, value in values.items():
            kind = declared.get(key)
            if kind is None:
                hint = did_you_mean(key, set(declared)) or f"declare it under `fields.{namespace}`"
                self.add((*loc, key), f"unknown {namespace} field `{key}`", hint)
                continue
            types = _TYPE_CHECKS.get(kind)
            wrong = types is not None and (not isinstance(value, types) or (kind == "number" and isinstance(value, bool)))
            if value is not None and wrong:
                self.add((*loc, key), f"{namespace} field `{key}` is declared as {kind}, got {value!r}")

    def request(self, request: CaseRequest) -> None:
        self.fields(request.context, "context", ("request", "context"))
        try:
            self.rules.check_event(request.event)  # as a served decision checks it
        except InvalidInput as exc:
            path = (exc.field or "event").split(".")
            self.add(("request", *path), exc.message)
        placement = request.placement
        if placement is not None:
            known = {p for t in self.rules.treatments for p in t.placements} | set(self.rules.arbitration.placements)
            if placement not in known:
                hint = did_you_mean(placement, known) or "placements the rules name: " + ", ".join(sorted(known))
                self.add(("request", "placement"), f"unknown placement `{placement}`", hint)

    def customer(self, customer: CaseCustomer, customer_id: str, now: int) -> None:
        vocab = self.rules.vocabulary
        self.fields(customer.profile, "customer", ("customer", "profile"))
        for i, ev in enumerate(customer.events):
            where: Loc = ("customer", "events", i)
            if ev.type not in vocab.event_types:
                hint = did_you_mean(ev.type, vocab.event_types) or "declare it under `event_types:`"
                self.add((*where, "type"), f"unknown event type `{ev.type}`", hint)
                continue
            event = Event(f"case-{i}", customer_id, ev.type, now - ev.ago, ev.channel, dict(ev.attributes))
            try:
                effects_of(event, vocab, now, equity=self.rules.equity)
            except InvalidInput as exc:
                field = (exc.field or "").removeprefix("attributes.")
                self.add((*where, "attributes", field) if exc.field else where, f"event `{ev.type}`: {exc.message}")
        for kind, names, known in (("flag", customer.flags, vocab.flags), ("counter", customer.counters, vocab.counters)):
            for flag in names:
                if flag not in known:
                    hint = did_you_mean(flag, known) or f"no trigger sets a {kind} of that name"
                    self.add(("customer", f"{kind}s", flag), f"unknown {kind} `{flag}`", hint)
        groups = {t.group for t in self.rules.treatments}
        for window in ("day", "week", "total"):
            for key in getattr(customer.caps, window):
                if key not in self.rules.by_id and key not in groups:
                    hint = did_you_mean(key, set(self.rules.by_id) | groups)
                    self.add(("customer", "caps", window, key), f"`{key}` is neither a treatment id nor a group", hint)

    def expect(self, expect: Expect, *, complete: bool = True) -> None:
        if expect.is_empty() and complete:
            self.add(("expect",), "a case needs at least one expectation under `expect`")
            return
        raw = _get(self.raw, "expect")
        known = set(self.rules.by_id)
        for key in Expect.model_fields:
            if key in ("fallback", "tier"):
                continue
            for tid, where in _id_locs(_get(raw, key), ("expect", key)):
                if tid not in known:
                    self.add(where, f"unknown treatment `{tid}`", did_you_mean(tid, known))
        policies = {
            "capped": {p.id for p in self.rules.frequency_policies},
            "suppressed": {p.id for p in self.rules.suppression_policies},
        }
        for key, ids in policies.items():
            for tid, policy in getattr(expect, key).items():
                if policy is not None and policy not in ids:
                    kind = "frequency_cap" if key == "capped" else "suppression"
                    hint = did_you_mean(policy, ids) or f"{kind} policies: " + (", ".join(sorted(ids)) or "none")
                    self.add(("expect", key, tid), f"unknown {kind} policy `{policy}`", hint)
        if expect.tier is not None and expect.tier not in self.rules.equity.tier_names:
            hint = did_you_mean(expect.tier, set(self.rules.equity.tier_names)) or "tiers: " + ", ".join(
                self.rules.equity.tier_names
            )
            self.add(("expect", "tier"), f"unknown tier `{expect.tier}`", hint)
