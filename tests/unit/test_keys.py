"""The batched key builders name exactly what the one-key functions name: the read and the
write-back scripts find a customer's data under the keys every other reader and writer uses."""

from __future__ import annotations

from engine.state import keys

NOW = 1_795_588_826_803  # a day and ISO week to name


def test_the_state_keys_are_the_read_scripts_keys_as_the_one_key_functions_name_them() -> None:
    cid = "cust-001:x@y"
    counters = ("premium_seat_views", "lb:email_received")
    assert keys.state_keys(cid, NOW, counters) == [
        keys.profile(cid),
        keys.cart(cid),
        keys.last(cid),
        keys.caps_day(cid, NOW),
        keys.caps_week(cid, NOW),
        keys.recent(cid),
        keys.flags(cid),
        keys.caps_total(cid),
        keys.topics(cid),
        keys.value_facts(cid),
        *(keys.counter(cid, name) for name in counters),
    ]
    assert keys.state_keys(cid, NOW, ())[3].endswith(":caps:d:" + keys.day_of(NOW))


def test_the_write_back_keys_are_the_caps_and_the_record_the_feedback_join_reads() -> None:
    cid = "cust-002"
    decision_id = keys.new_decision_id("0" * keys.DECISION_NONCE_CHARS, cid)
    written = keys.write_back_keys(cid, NOW, decision_id)
    assert written == [keys.caps_day(cid, NOW), keys.caps_week(cid, NOW), keys.decision(decision_id), keys.caps_total(cid)]
    assert all(k.startswith("c:{" + cid + "}:") for k in written)  # one hash slot
