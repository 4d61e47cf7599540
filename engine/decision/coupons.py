"""Coupons as cart adjustments: which coupon, which line items, how much off.

A web or app channel applies these to the cart automatically, so the customer sees the
discount without typing a code. A coupon treatment's content says `discount_pct` and what it
`applies_to`: `all_items`, or a list of SKUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.domain import ChosenTreatment


def _eligible(applies_to: Any, sku: str) -> bool:
    if applies_to in (None, "all_items"):
        return True
    return isinstance(applies_to, list | tuple) and sku in applies_to


def cart_adjustments(chosen: Sequence[ChosenTreatment], cart: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for t in chosen:
        if t.kind != "coupon":
            continue
        pct = float(t.content.get("discount_pct", 0) or 0)
        lines = []
        for sku, line in cart.items():
            if not _eligible(t.content.get("applies_to"), sku):
                continue
            qty, price = int(line.get("qty", 1)), float(line.get("price", 0.0))
            lines.append({"sku": sku, "qty": qty, "price": price, "discount": round(qty * price * pct / 100, 2)})
        if lines and pct > 0:
            total = round(sum(line["discount"] for line in lines), 2)
            out.append({"treatment_id": t.id, "coupon": t.content.get("code"), "lines": lines, "discount": total})
    return out
