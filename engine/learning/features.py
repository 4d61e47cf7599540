"""Turn a customer, a decision context and a treatment into sparse, hashed features.

Names are human-readable (`c.tier=gold`, `x.device=ios`, `t.id=apology_upgrade`,
`t.id=apology_upgrade&c.tier=gold`) so weights can be inspected, and they are hashed with
CRC-32, not Python's `hash`, because the learner worker and every serving process must agree
on the index of a name across processes and restarts.

Serving scores many candidates per decision, so the work is split: `shared()` once per
decision (customer and context features), `treatment_part()` once per treatment and cached,
and `encode()` only joins them. Interaction indices are computed by continuing the CRC of a
cached prefix (`crc32(suffix, crc32(prefix)) == crc32(prefix + suffix)`), so no interaction
name is ever built as a string on the hot path.

`encode_decision()` goes one step further. Which features a decision has, and their indices,
depend only on its categorical values (tiers, devices), on which numeric fields are present,
and on the candidates; numeric values only change the numbers in the value row. So that
layout is built once, cached, and each later decision with the same layout fills in a handful
of numbers instead of hashing and joining every feature again.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, Protocol

import numpy as np

from engine.learning.spec import ModelSpec, NumericTransform

PREFIXES: dict[str, str] = {"customer": "c", "context": "x", "treatment": "t"}
TREATMENT_CACHE_LIMIT = 4096
"""Treatments come from the rule set, so the cache stays small; the bound only guards misuse."""
VALUE_CACHE_LIMIT = 65_536
"""Distinct (field, value) pairs kept hashed; cleared wholesale when full (values are cheap to redo)."""
LAYOUT_CACHE_LIMIT = 8_192
"""Distinct decision layouts kept (a few KiB each); cleared wholesale when full."""


def hash_index(name: str, bits: int) -> int:
    """Index of a feature name in a weight vector of size 2**bits; stable across processes."""
    return zlib.crc32(name.encode()) & ((1 << bits) - 1)


class TreatmentLike(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def group(self) -> str: ...

    @property
    def kind(self) -> str: ...


Treatment = tuple[str, str, str] | TreatmentLike
"""A treatment as (id, group, kind), or anything with those attributes (e.g. CompiledTreatment)."""


def treatment_key(treatment: Treatment) -> tuple[str, str, str]:
    """(id, group, kind): all of a treatment that its features read."""
    return treatment if isinstance(treatment, tuple) else (treatment.id, treatment.group, treatment.kind)


# A hashed feature: (name, value, crc32 of the name, b"&" + name) — the last two feed interactions.
_Item = tuple[str, float, int, bytes]


def _item(name: str, value: float) -> _Item:
    raw = name.encode()
    return (name, value, zlib.crc32(raw), b"&" + raw)


def _category(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _number(value: Any) -> float | None:
    """A numeric field's value as a finite float, or None when it has none (then no feature)."""
    if value is None or isinstance(value, list | tuple | set | frozenset | dict):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def field_items(prefix: str, value: Any, transform: NumericTransform | None) -> list[tuple[str, float]]:
    """The (name, value) features of one field; empty when the value is missing or unusable.

    Fields with a numeric transform give one feature named after the field; every other value
    is categorical (`prefix=value`, 1.0), and a list gives one indicator per distinct element.
    """
    if value is None:
        return []
    if transform is not None:
        number = _number(value)
        return [] if number is None else [(prefix, transform.apply(number))]
    if isinstance(value, list | tuple | set | frozenset):
        names = {f"{prefix}={c}" for c in map(_category, value) if c is not None}
        return [(name, 1.0) for name in sorted(names)]
    category = _category(value)
    return [] if category is None else [(f"{prefix}={category}", 1.0)]


@dataclass(frozen=True, slots=True)
class _Slot:
    ref: str
    field: str
    prefix: str
    transform: NumericTransform | None
    own: bool  # a feature on its own, not only a part of interactions
    crc: int = 0  # of the prefix: a numeric feature is named after its field, whatever the value
    amp: bytes = b""  # b"&" + prefix, as in _Item


@dataclass(frozen=True, slots=True)
class _Plan:
    """An interaction involving the treatment, split around its (single) treatment field."""

    parts: tuple[str, ...]
    tref: int | None  # index of the treatment field in Featurizer.trefs; None: several, general path
    before: tuple[str, ...]
    after: tuple[str, ...]


_EMPTY: list[_Item] = []


def _slot(ref: str, prefix: str, transform: NumericTransform | None, own: bool) -> _Slot:
    _, crc, amp = _item(prefix, 0.0)[1:]
    return _Slot(ref, ref.split(".", 1)[1], prefix, transform, own, crc, amp)


class TreatmentPart:
    """The cached features of one treatment: its own features and its fields for interactions.

    A part is `regular` when every treatment field it needs has exactly one value (always so
    for rule-set treatments); then rows differ only in indices and `encode` takes its fast path.
    """

    __slots__ = ("amps", "crcs", "idx", "names", "refs", "regular", "values")

    def __init__(self, items: list[_Item], refs: dict[str, list[_Item]], trefs: Sequence[str], mask: int) -> None:
        self.names = [i[0] for i in items]
        self.values = [i[1] for i in items]
        self.idx = [i[2] & mask for i in items]
        self.refs = refs
        self.regular = all(len(refs[r]) == 1 for r in trefs)
        self.crcs = [refs[r][0][2] if self.regular else 0 for r in trefs]
        self.amps = [refs[r][0][3] if self.regular else b"" for r in trefs]


class SharedFeatures:
    """Everything about one decision that does not depend on the treatment."""

    __slots__ = ("idx", "names", "ops_first", "ops_later", "plans", "refs", "row_values", "values")

    def __init__(
        self,
        names: list[str],
        values: list[float],
        idx: list[int],
        refs: dict[str, list[_Item]],
        plans: list[tuple[_Plan, list[tuple[int, float]] | None, list[tuple[bytes, float]] | None]],
        n_treatment_own: int,
    ) -> None:
        self.names = names
        self.values = values
        self.idx = idx
        self.refs = refs
        self.plans = plans
        # Fast path: a row's interaction indices are crc32(suffix, crc of the treatment field),
        # or crc32(suffix, crc32(b"&" + treatment field, crc of the shared prefix)).
        self.ops_first: list[tuple[int, bytes]] = []
        self.ops_later: list[tuple[int, int, bytes]] = []
        first_values: list[float] = []
        later_values: list[float] = []
        general = False
        for plan, before, after in plans:
            if plan.tref is None:
                general = True
                continue
            suffixes = after if after is not None else [(b"", 1.0)]
            if before is None:
                for raw, sv in suffixes:
                    self.ops_first.append((plan.tref, raw))
                    first_values.append(sv)
            else:
                for crc, pv in before:
                    for raw, sv in suffixes:
                        self.ops_later.append((plan.tref, crc, raw))
                        later_values.append(pv * sv)
        self.row_values: np.ndarray | None = None  # None: an interaction needs the general path
        if not general:
            row = values + [1.0] * n_treatment_own + first_values + later_values
            self.row_values = np.array(row, dtype=np.float32)


class _Layout:
    """A cached decision layout: the index matrix, and how to fill its (shared) value row.

    Every value in the row is 1.0 (categorical features) or a product of at most two numeric
    fields' values, so filling it is exact: the same floats as building it from scratch.
    """

    __slots__ = ("base", "fill", "idx")

    def __init__(self, idx: np.ndarray, base: np.ndarray, fill: list[tuple[int, tuple[int, ...]]]) -> None:
        idx.flags.writeable = False  # shared by every decision with this layout
        self.idx = idx
        self.base = base
        self.fill = fill  # (column, positions of the numeric fields whose values multiply into it)

    def values(self, numbers: list[float]) -> np.ndarray:
        row = self.base.copy()
        for col, sources in self.fill:
            if len(sources) == 1:
                row[col] = numbers[sources[0]]
            else:
                row[col] = numbers[sources[0]] * numbers[sources[1]]
        val = np.empty(self.idx.shape, dtype=np.float32)
        val[:] = row
        return val


def _cross_states(lists: Sequence[list[_Item]]) -> list[tuple[int, float]]:
    """CRC states and value products of the joined names of every combination, in order."""
    states = [(item[2], item[1]) for item in lists[0]]
    for items in lists[1:]:
        states = [(zlib.crc32(item[3], crc), v * item[1]) for crc, v in states for item in items]
    return states


def _cross_suffixes(lists: Sequence[list[_Item]]) -> list[tuple[bytes, float]]:
    out: list[tuple[bytes, float]] = [(b"", 1.0)]
    for items in lists:
        out = [(raw + item[3], v * item[1]) for raw, v in out for item in items]
    return out


class Featurizer:
    """Features of (customer profile, context, treatment) as one model spec defines them."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.bits = spec.hash_bits
        self.mask = (1 << self.bits) - 1
        features = spec.features
        numeric = features.numeric
        own = (
            {f"customer.{f}" for f in features.customer}
            | {f"context.{f}" for f in features.context}
            | {f"treatment.{f}" for f in features.treatment}
        )
        # Every field read by any feature, and whether it is also a feature on its own.
        refs = features.refs()
        self._slots = {
            ns: [
                _slot(r, f"{PREFIXES[ns]}.{r.split('.', 1)[1]}", numeric.get(r), r in own) for r in refs if r.startswith(ns + ".")
            ]
            for ns in PREFIXES
        }
        self.trefs: list[str] = [s.ref for s in self._slots["treatment"]]
        self._n_treatment_own = len(features.treatment)
        self._shared_interactions = [tuple(p) for p in features.interactions if not any(r.startswith("treatment.") for r in p)]
        self._plans: list[_Plan] = []
        for parts in (tuple(p) for p in features.interactions):
            positions = [i for i, r in enumerate(parts) if r.startswith("treatment.")]
            if len(positions) == 1:
                j = positions[0]
                self._plans.append(_Plan(parts, self.trefs.index(parts[j]), parts[:j], parts[j + 1 :]))
            elif positions:
                self._plans.append(_Plan(parts, None, (), ()))
        self._treatments: dict[tuple[str, str, str], TreatmentPart] = {}
        self._values: dict[tuple[str, type, Any], list[_Item]] = {}
        self._layouts: dict[tuple[Any, ...], _Layout | None] = {}
        # Numeric slots, by position among the numeric customer then context slots.
        numeric_slots = [s for s in self._slots["customer"] + self._slots["context"] if s.transform is not None]
        self._numeric_at = {s.ref: i for i, s in enumerate(numeric_slots)}

    # -- per decision -------------------------------------------------------------------------

    def _field(self, s: _Slot, value: Any) -> list[_Item]:
        if value is None:
            return _EMPTY
        if s.transform is not None:
            # Numeric: the name, hence the hash, is the field's own, so there is nothing worth
            # caching per value; caching it would fill the cache with one entry per customer.
            return [(name, v, s.crc, s.amp) for name, v in field_items(s.prefix, value, s.transform)]
        # Profile values repeat across customers (tiers, devices), so their hashed items are cached.
        key = (s.ref, value.__class__, value)
        try:
            return self._values[key]
        except KeyError:
            items = [_item(n, v) for n, v in field_items(s.prefix, value, s.transform)]
            if len(self._values) >= VALUE_CACHE_LIMIT:
                self._values.clear()
            self._values[key] = items
            return items
        except TypeError:  # unhashable, e.g. a list
            return [_item(n, v) for n, v in field_items(s.prefix, value, s.transform)]

    def shared(self, profile: Mapping[str, Any] | None, context: Mapping[str, Any] | None) -> SharedFeatures:
        """Customer and context features, computed once per decision and reused for every candidate."""
        refs: dict[str, list[_Item]] = {}
        names: list[str] = []
        values: list[float] = []
        idx: list[int] = []
        mask = self.mask
        for ns, source in (("customer", profile), ("context", context)):
            get = source.get if source else _no_value
            for s in self._slots[ns]:
                items = self._field(s, get(s.field))
                refs[s.ref] = items
                if s.own:
                    for item in items:
                        names.append(item[0])
                        values.append(item[1])
                        idx.append(item[2] & mask)
        for parts in self._shared_interactions:
            for crc, value in _cross_states([refs[r] for r in parts]):
                idx.append(crc & mask)
                values.append(value)
            names.extend(name for name, _ in _cross_names([refs[r] for r in parts]))
        plans = []
        for plan in self._plans:
            if plan.tref is None:
                plans.append((plan, None, None))
                continue
            before = _cross_states([refs[r] for r in plan.before]) if plan.before else None
            after = _cross_suffixes([refs[r] for r in plan.after]) if plan.after else None
            plans.append((plan, before, after))
        return SharedFeatures(names, values, idx, refs, plans, self._n_treatment_own)

    # -- per treatment ------------------------------------------------------------------------

    def treatment_part(self, treatment: Treatment) -> TreatmentPart:
        """The treatment's own features; cached, since the same treatments recur in every decision."""
        key = treatment_key(treatment)
        part = self._treatments.get(key)
        if part is None:
            part = self._build_treatment(key)
            if len(self._treatments) >= TREATMENT_CACHE_LIMIT:
                self._treatments.clear()
            self._treatments[key] = part
        return part

    def _build_treatment(self, key: tuple[str, str, str]) -> TreatmentPart:
        source = dict(zip(("id", "group", "kind"), key, strict=True))
        refs: dict[str, list[_Item]] = {}
        items: list[_Item] = []
        for s in self._slots["treatment"]:
            found = [_item(n, v) for n, v in field_items(s.prefix, source.get(s.field), None)]
            refs[s.ref] = found
            if s.own:
                items.extend(found)
        return TreatmentPart(items, refs, self.trefs, self.mask)

    # -- joining ------------------------------------------------------------------------------

    def features(self, shared: SharedFeatures, treatment: Treatment) -> dict[str, float]:
        """Named features of one candidate, as the learner consumes them."""
        part = self.treatment_part(treatment)
        out = dict(zip(shared.names, shared.values, strict=True))
        out.update(zip(part.names, part.values, strict=True))
        for plan in self._plans:
            lists = [part.refs[r] if r.startswith("treatment.") else shared.refs[r] for r in plan.parts]
            out.update(_cross_names(lists))
        return out

    def featurize(
        self, profile: Mapping[str, Any] | None, context: Mapping[str, Any] | None, treatment: Treatment
    ) -> dict[str, float]:
        """One-shot `features(shared(profile, context), treatment)`, for training."""
        return self.features(self.shared(profile, context), treatment)

    def encode_decision(
        self, profile: Mapping[str, Any] | None, context: Mapping[str, Any] | None, treatments: Sequence[Treatment]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`encode(shared(profile, context), treatments)`, from the cached layout when this
        decision's categorical values, present numeric fields and candidates were seen before.

        The index matrix it returns is shared and read-only.
        """
        shape: list[Any] = []
        numbers: list[float] = []
        for ns, source in (("customer", profile), ("context", context)):
            get = source.get if source else _no_value
            for s in self._slots[ns]:
                value = get(s.field)
                if s.transform is None:
                    shape.append(value.__class__)
                    shape.append(value)
                else:
                    number = _number(value)
                    shape.append(number is not None)
                    numbers.append(0.0 if number is None else s.transform.apply(number))
        key = (*shape, *map(treatment_key, treatments))
        try:
            layout = self._layouts[key]
        except KeyError:
            shared = self.shared(profile, context)
            idx, val = self.encode(shared, treatments)
            if len(self._layouts) >= LAYOUT_CACHE_LIMIT:
                self._layouts.clear()
            self._layouts[key] = self._layout_of(shared, idx, treatments)
            return idx, val
        except TypeError:  # an unhashable value, e.g. a list: no layout to look up
            return self.encode(self.shared(profile, context), treatments)
        if layout is None:  # a layout the fast path cannot fill (see _layout_of)
            return self.encode(self.shared(profile, context), treatments)
        return layout.idx, layout.values(numbers)

    def _layout_of(self, shared: SharedFeatures, idx: np.ndarray, treatments: Sequence[Treatment]) -> _Layout | None:
        """The layout of an encoded decision, or None where it could not be refilled exactly: rows
        built by the general path, or a value that is a product of three numeric fields."""
        regular = all(self.treatment_part(t).regular for t in treatments)
        if not treatments or shared.row_values is None or not regular:
            return None
        sources = self._row_sources(shared.refs)
        if len(sources) != idx.shape[1] or any(len(src) > 2 for src in sources):
            return None
        fill = [(col, src) for col, src in enumerate(sources) if src]
        base = shared.row_values.copy()
        for col, _ in fill:
            base[col] = 1.0
        return _Layout(idx, base, fill)

    def _row_sources(self, refs: dict[str, list[_Item]]) -> list[tuple[int, ...]]:
        """For each column of a fast-path row (the order SharedFeatures builds it in), the numeric
        fields whose values multiply into it; empty for a constant 1.0."""

        def of(parts: Sequence[str]) -> tuple[int, ...]:
            return tuple(sorted(self._numeric_at[r] for r in parts if r in self._numeric_at))

        def count(parts: Sequence[str]) -> int:
            return math.prod(len(refs[r]) for r in parts)

        cols: list[tuple[int, ...]] = []
        for ns in ("customer", "context"):
            for s in self._slots[ns]:
                if s.own:
                    cols.extend([of((s.ref,))] * len(refs[s.ref]))
        for parts in self._shared_interactions:
            cols.extend([of(parts)] * count(parts))
        cols.extend([()] * self._n_treatment_own)
        later: list[tuple[int, ...]] = []
        for plan in self._plans:
            assert plan.tref is not None  # a fast-path row has no general interactions
            block = [of(plan.before + plan.after)] * (count(plan.before) * count(plan.after))
            (later if plan.before else cols).extend(block)
        return cols + later

    def encode(self, shared: SharedFeatures, treatments: Sequence[Treatment]) -> tuple[np.ndarray, np.ndarray]:
        """Hashed indices (int32, padding -1) and values (float32, padding 0), one row per treatment.

        Columns are the shared features, then the treatment's own, then interactions; the order
        within a row carries no meaning, since the kernel only sums.
        """
        parts = [self.treatment_part(t) for t in treatments]
        n = len(parts)
        if n == 0:
            return np.empty((0, 0), dtype=np.int32), np.empty((0, 0), dtype=np.float32)
        if shared.row_values is None or not all(p.regular for p in parts):
            return self._encode_general(shared, parts)
        mask = self.mask
        crc32 = zlib.crc32
        # Each row: the shared indices, the treatment's own, then its interactions (the ops_first
        # block, then the ops_later block); built as lists and converted in one call.
        ops_first, ops_later = shared.ops_first, shared.ops_later
        rows = [
            shared.idx
            + p.idx
            + [crc32(raw, p.crcs[j]) & mask for j, raw in ops_first]
            + [crc32(raw, crc32(p.amps[j], c)) & mask for j, c, raw in ops_later]
            for p in parts
        ]
        idx = np.array(rows, dtype=np.int32)
        val = np.repeat(shared.row_values[np.newaxis, :], n, axis=0)
        return idx, val

    def _encode_general(self, shared: SharedFeatures, parts: list[TreatmentPart]) -> tuple[np.ndarray, np.ndarray]:
        """Any shape of interaction and any treatment; rows may differ in length and are padded."""
        mask = self.mask
        rows_idx: list[list[int]] = []
        rows_val: list[list[float]] = []
        for part in parts:
            ri = shared.idx + part.idx
            rv = shared.values + part.values
            for plan, _, _ in shared.plans:
                lists = [part.refs[r] if r.startswith("treatment.") else shared.refs[r] for r in plan.parts]
                for crc, v in _cross_states(lists):
                    ri.append(crc & mask)
                    rv.append(v)
            rows_idx.append(ri)
            rows_val.append(rv)
        width = max(len(r) for r in rows_idx)
        idx = np.full((len(parts), width), -1, dtype=np.int32)
        val = np.zeros((len(parts), width), dtype=np.float32)
        for i, (ri, rv) in enumerate(zip(rows_idx, rows_val, strict=True)):
            idx[i, : len(ri)] = ri
            val[i, : len(rv)] = rv
        return idx, val


def _no_value(_name: str) -> None:
    return None


def _cross_names(lists: Sequence[list[_Item]]) -> list[tuple[str, float]]:
    """Joined names and value products of every combination (an empty part gives none)."""
    out = []
    for combo in product(*lists):
        value = 1.0
        for item in combo:
            value *= item[1]
        out.append(("&".join(item[0] for item in combo), value))
    return out
