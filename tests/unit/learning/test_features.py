"""Featurizer: names, missing fields, stable hashing, and encode agreeing with the named features."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.learning.features import Featurizer, hash_index
from engine.learning.spec import ModelSpec

SPEC = ModelSpec.model_validate(
    {
        "id": "response",
        "learner": "logistic_regression",
        "features": {
            "customer": ["tier", "age", "email_opt_in", "interests", "points"],
            "context": ["device"],
            "treatment": ["id", "group", "kind"],
            "interactions": [["treatment.id", "customer.tier"], ["customer.tier", "context.device"]],
            "numeric": {"customer.age": {"scale": 100}, "customer.points": {"log1p": True, "scale": 10, "clip": 1}},
        },
    }
)
PROFILE = {"tier": "gold", "age": 37, "email_opt_in": True, "interests": ["golf", "jazz", "golf"], "points": 1e9, "name": "Ann"}
CONTEXT = {"device": "ios", "page": "home"}
UPGRADE = ("apology_upgrade", "service", "offer")


@dataclass(frozen=True)
class FakeTreatment:
    id: str
    group: str
    kind: str


def rows(idx: np.ndarray, val: np.ndarray) -> list[list[tuple[int, float]]]:
    return [sorted((int(i), float(v)) for i, v in zip(ri, rv, strict=True) if i >= 0) for ri, rv in zip(idx, val, strict=True)]


def hashed(features: dict[str, float], bits: int) -> list[tuple[int, float]]:
    return sorted((hash_index(name, bits), float(np.float32(value))) for name, value in features.items())


def test_feature_names_and_values() -> None:
    f = Featurizer(SPEC)
    features = f.featurize(PROFILE, CONTEXT, UPGRADE)
    assert features == {
        "c.tier=gold": 1.0,
        "c.age": pytest.approx(0.37),
        "c.email_opt_in=true": 1.0,
        "c.interests=golf": 1.0,
        "c.interests=jazz": 1.0,
        "c.points": 1.0,  # log1p(1e9)/10 ≈ 2.07, clipped to 1
        "x.device=ios": 1.0,
        "t.id=apology_upgrade": 1.0,
        "t.group=service": 1.0,
        "t.kind=offer": 1.0,
        "t.id=apology_upgrade&c.tier=gold": 1.0,
        "c.tier=gold&x.device=ios": 1.0,
    }


def test_missing_and_unusable_fields_produce_no_feature() -> None:
    f = Featurizer(SPEC)
    profile = {"tier": "", "age": "not a number", "email_opt_in": None, "interests": [], "points": math.nan}
    features = f.featurize(profile, None, UPGRADE)
    assert features == {"t.id=apology_upgrade": 1.0, "t.group=service": 1.0, "t.kind=offer": 1.0}
    assert f.featurize(None, {}, UPGRADE) == features


def test_numbers_and_bools_without_a_transform_are_categories() -> None:
    spec = SPEC.model_copy(update={"features": SPEC.features.model_copy(update={"numeric": {}})})
    f = Featurizer(spec)
    features = f.featurize({"tier": 1, "age": 37.0, "email_opt_in": False}, {"device": 2.5}, UPGRADE)
    assert {"c.tier=1", "c.age=37", "c.email_opt_in=false", "x.device=2.5"} <= set(features)
    # True and 1 are equal as dict keys; the value cache must not confuse them.
    assert "c.tier=true" in f.featurize({"tier": True}, None, UPGRADE)
    assert "c.tier=1" in f.featurize({"tier": 1}, None, UPGRADE)


def test_numeric_strings_are_parsed_for_numeric_fields() -> None:
    assert Featurizer(SPEC).featurize({"age": "50"}, None, UPGRADE)["c.age"] == pytest.approx(0.5)


def test_hash_index_is_crc32_and_stable_across_processes() -> None:
    # Literal values: a change here would silently invalidate every stored weight vector.
    assert hash_index("t.id=apology_upgrade", 18) == 175475
    assert hash_index("c.tier=gold", 18) == 141837
    assert hash_index("x.device=ios", 18) == 26240
    assert hash_index("t.id=apology_upgrade&c.tier=gold", 18) == 91330
    assert hash_index("c.age", 20) == 846637
    code = "from engine.learning.features import hash_index; print(hash_index('c.tier=gold', 18))"
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        assert out.stdout.strip() == "141837"


def test_encode_shapes_dtypes_and_agreement_with_features() -> None:
    f = Featurizer(SPEC)
    shared = f.shared(PROFILE, CONTEXT)
    treatments = [UPGRADE, ("cart_sweetener", "sales", "offer"), FakeTreatment("agent_greeting", "engagement", "prompt")]
    idx, val = f.encode(shared, treatments)
    assert idx.dtype == np.int32 and val.dtype == np.float32
    assert idx.shape == val.shape == (3, 12)
    assert (idx >= 0).all() and (idx < 2**18).all()
    for row, t in zip(rows(idx, val), treatments, strict=True):
        assert row == hashed(f.features(shared, t), 18)


def test_treatment_parts_are_cached_and_accept_objects_or_tuples() -> None:
    f = Featurizer(SPEC)
    part = f.treatment_part(UPGRADE)
    assert f.treatment_part(FakeTreatment(*UPGRADE)) is part
    assert part.names == ["t.id=apology_upgrade", "t.group=service", "t.kind=offer"]


def test_encode_pads_rows_of_different_length() -> None:
    f = Featurizer(SPEC)
    shared = f.shared({"tier": "gold"}, {})
    # An empty group yields no `t.group` feature, so this row is one shorter and padded.
    treatments = [UPGRADE, ("odd", "", "offer")]
    idx, val = f.encode(shared, treatments)
    assert idx.shape == (2, 5)
    assert idx[1, -1] == -1 and val[1, -1] == 0.0
    assert (idx[0] >= 0).all()
    for row, t in zip(rows(idx, val), treatments, strict=True):
        assert row == hashed(f.features(shared, t), 18)


def test_encode_of_no_treatments() -> None:
    f = Featurizer(SPEC)
    idx, val = f.encode(f.shared(PROFILE, CONTEXT), [])
    assert idx.shape == val.shape == (0, 0)


def test_interactions_in_any_order_and_with_lists() -> None:
    spec = ModelSpec.model_validate(
        {
            "id": "m",
            "learner": "logistic_regression",
            "hash_bits": 12,
            "features": {
                "treatment": [],
                "interactions": [
                    ["customer.interests", "treatment.id", "context.device"],
                    ["treatment.kind", "treatment.group"],
                ],
            },
        }
    )
    f = Featurizer(spec)
    shared = f.shared(PROFILE, CONTEXT)
    features = f.features(shared, UPGRADE)
    assert features == {
        "c.interests=golf&t.id=apology_upgrade&x.device=ios": 1.0,
        "c.interests=jazz&t.id=apology_upgrade&x.device=ios": 1.0,
        "t.kind=offer&t.group=service": 1.0,
    }
    idx, val = f.encode(shared, [UPGRADE])
    assert rows(idx, val)[0] == hashed(features, 12)
    # A missing part removes the interaction altogether.
    assert f.featurize({"interests": ["golf"]}, {}, UPGRADE) == {"t.kind=offer&t.group=service": 1.0}


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(["a", "b", "gold", ""]),
)
value = st.one_of(scalar, st.lists(st.sampled_from(["x", "y", "z"]), max_size=3))
CUSTOMER_FIELDS = ["f1", "f2", "f3"]
CONTEXT_FIELDS = ["g1", "g2"]
REFS = [f"customer.{c}" for c in CUSTOMER_FIELDS] + [f"context.{c}" for c in CONTEXT_FIELDS] + ["treatment.id", "treatment.group"]


@st.composite
def specs(draw: Any) -> ModelSpec:
    interactions = draw(
        st.lists(st.lists(st.sampled_from(REFS), min_size=2, max_size=3, unique=True), max_size=4, unique_by=frozenset)
    )
    numeric = draw(st.lists(st.sampled_from(REFS[:5]), unique=True, max_size=2))
    return ModelSpec.model_validate(
        {
            "id": "m",
            "learner": "logistic_regression",
            "hash_bits": draw(st.integers(8, 20)),
            "features": {
                "customer": draw(st.lists(st.sampled_from(CUSTOMER_FIELDS), unique=True)),
                "context": draw(st.lists(st.sampled_from(CONTEXT_FIELDS), unique=True)),
                "treatment": draw(st.lists(st.sampled_from(["id", "group", "kind"]), unique=True)),
                "interactions": interactions,
                "numeric": {r: {"scale": 3.0} for r in numeric},
            },
        }
    )


@settings(max_examples=150, deadline=None)
@given(
    spec=specs(),
    profile=st.dictionaries(st.sampled_from(CUSTOMER_FIELDS), value),
    context=st.dictionaries(st.sampled_from(CONTEXT_FIELDS), value),
    treatments=st.lists(
        st.tuples(st.sampled_from(["t1", "t2", "t3"]), st.sampled_from(["g1", "g2", ""]), st.sampled_from(["offer", "prompt"])),
        min_size=1,
        max_size=5,
    ),
)
def test_encode_always_agrees_with_named_features(
    spec: ModelSpec, profile: dict[str, Any], context: dict[str, Any], treatments: list[tuple[str, str, str]]
) -> None:
    f = Featurizer(spec)
    shared = f.shared(profile, context)
    idx, val = f.encode(shared, treatments)
    named = [f.features(shared, t) for t in treatments]
    assert idx.shape == val.shape == (len(treatments), max(len(n) for n in named))
    for (ri, rv), features in zip(zip(idx, val, strict=True), named, strict=True):
        used = ri >= 0
        assert not (~used[: used.sum()]).any(), "padding only at the end"
        assert (rv[~used] == 0).all()
        got = sorted(zip(ri[used].tolist(), rv[used].tolist(), strict=True))
        want = hashed(features, spec.hash_bits)
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6)


def test_fast_path_keeps_values_with_their_interactions() -> None:
    spec = ModelSpec.model_validate(
        {
            "id": "m",
            "learner": "logistic_regression",
            "features": {
                "customer": ["age"],
                "interactions": [
                    ["customer.age", "treatment.id"],
                    ["treatment.id", "customer.points"],
                    ["treatment.id", "context.device"],
                ],
                "numeric": {"customer.age": {"scale": 100}, "customer.points": {"scale": 10}},
            },
        }
    )
    f = Featurizer(spec)
    shared = f.shared({"age": 40, "points": 3}, {"device": "ios"})
    treatments = [UPGRADE, ("cart_sweetener", "sales", "offer")]
    idx, val = f.encode(shared, treatments)
    assert idx.shape == (2, 5)
    for row, t in zip(rows(idx, val), treatments, strict=True):
        assert row == hashed(f.features(shared, t), 18)
    assert f.features(shared, UPGRADE)["t.id=apology_upgrade&c.points"] == pytest.approx(0.3)


@settings(max_examples=200, deadline=None)
@given(
    spec=specs(),
    profile=st.dictionaries(st.sampled_from(CUSTOMER_FIELDS), value),
    context=st.dictionaries(st.sampled_from(CONTEXT_FIELDS), value),
    numbers=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=5, max_size=5),
    treatments=st.lists(
        st.tuples(st.sampled_from(["t1", "t2", "t3"]), st.sampled_from(["g1", "g2", ""]), st.sampled_from(["offer", "prompt"])),
        max_size=5,
    ),
)
def test_encode_decision_from_a_cached_layout_equals_encoding_from_scratch(
    spec: ModelSpec,
    profile: dict[str, Any],
    context: dict[str, Any],
    numbers: list[float],
    treatments: list[tuple[str, str, str]],
) -> None:
    f = Featurizer(spec)
    # The same categorical values with other numbers: the second and third calls reuse the
    # layout the first one cached, whenever it could be cached.
    numeric = {ref.split(".", 1)[1] for ref in spec.features.numeric}
    other_profile = {k: numbers[i] if k in numeric and v is not None else v for i, (k, v) in enumerate(profile.items())}
    other_context = {k: numbers[-1 - i] if k in numeric and v is not None else v for i, (k, v) in enumerate(context.items())}
    for p, c in ((profile, context), (profile, context), (other_profile, other_context)):
        idx, val = f.encode_decision(p, c, treatments)
        want_idx, want_val = f.encode(f.shared(p, c), treatments)
        assert idx.dtype == want_idx.dtype and val.dtype == want_val.dtype
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(val, want_val)


LAYOUT_SPEC = ModelSpec.model_validate(
    {
        "id": "m",
        "learner": "logistic_regression",
        "features": {
            "customer": ["tier", "age", "points"],
            "context": ["device", "size"],
            "interactions": [
                ["treatment.id", "customer.tier"],
                ["treatment.group", "customer.age"],
                ["customer.age", "treatment.id", "context.size"],
            ],
            "numeric": {"customer.age": {"scale": 100}, "customer.points": {"log1p": True}, "context.size": {"scale": 7}},
        },
    }
)


def test_decisions_that_differ_only_in_numbers_share_one_layout() -> None:
    f = Featurizer(LAYOUT_SPEC)
    treatments = [UPGRADE, ("cart_sweetener", "sales", "offer")]
    for age, points, size in ((40, 3, 2), (71, 90_000, 5), (18.5, 0, 1)):
        profile, context = {"tier": "gold", "age": age, "points": points}, {"device": "ios", "size": size}
        idx, val = f.encode_decision(profile, context, treatments)
        want_idx, want_val = f.encode(f.shared(profile, context), treatments)
        np.testing.assert_array_equal(idx, want_idx)
        np.testing.assert_array_equal(val, want_val)
        assert not idx.flags.writeable, "the cached index matrix is shared by later decisions"
    assert len(f._layouts) == 1 and None not in f._layouts.values()
    # Another tier, or a numeric field gone missing, is another layout.
    f.encode_decision({"tier": "silver", "age": 40, "points": 3}, {"device": "ios", "size": 2}, treatments)
    f.encode_decision({"tier": "gold", "points": 3}, {"device": "ios", "size": 2}, treatments)
    assert len(f._layouts) == 3


def test_a_product_of_three_numbers_is_encoded_from_scratch_every_time() -> None:
    spec = LAYOUT_SPEC.model_copy(
        update={
            "features": LAYOUT_SPEC.features.model_copy(
                update={"interactions": [["customer.age", "customer.points", "context.size"]]}
            )
        }
    )
    f = Featurizer(spec)
    for age in (40, 41):
        profile, context = {"tier": "gold", "age": age, "points": 3}, {"device": "ios", "size": 2}
        _, val = f.encode_decision(profile, context, [UPGRADE])
        np.testing.assert_array_equal(val, f.encode(f.shared(profile, context), [UPGRADE])[1])
    assert list(f._layouts.values()) == [None]
