"""Coupons become discounts on exactly the cart lines they apply to."""

from __future__ import annotations

from engine.decision.coupons import cart_adjustments
from engine.domain import ChosenTreatment

CART = {"A": {"qty": 2, "price": 10.0}, "B": {"qty": 1, "price": 99.99}}


def coupon(applies_to: object, pct: float = 15) -> ChosenTreatment:
    return ChosenTreatment("c", "coupon", "sales", 1.0, 0.1, {"code": "X15", "discount_pct": pct, "applies_to": applies_to})


def test_a_coupon_for_some_skus_discounts_only_those_lines() -> None:
    (adj,) = cart_adjustments([coupon(["B"])], CART)
    assert adj["lines"] == [{"sku": "B", "qty": 1, "price": 99.99, "discount": 15.0}]
    assert adj["discount"] == 15.0 and adj["coupon"] == "X15"


def test_all_items_and_offers_that_are_not_coupons() -> None:
    offer = ChosenTreatment("o", "offer", "sales", 1.0, 0.1, {"discount_pct": 50})
    (adj,) = cart_adjustments([offer, coupon("all_items", 10)], CART)
    assert adj["discount"] == round(2.0 + 10.0, 2)
    assert cart_adjustments([coupon(["Z"])], CART) == [], "no line it applies to: no adjustment"
    assert cart_adjustments([coupon("all_items", 0)], CART) == []
