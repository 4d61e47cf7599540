"""What an event must be for its effects to be worked out: each refusal names the field at fault."""

from __future__ import annotations

from typing import Any

import pytest

from engine.decision.events import effects_of
from engine.domain import MAX_TS, Event
from engine.equity.config import EquityConfig
from engine.errors import InvalidInput
from engine.rules.vocabulary import Vocabulary

T0 = 1_700_000_000_000
VOCAB = Vocabulary.build(
    customer={"age": "number", "tier": "string", "email_opt_in": "bool"},
    questions={"favourite": "tier"},
    event_attributes={"ticket_scan": {"gate": "string", "row": "number"}},
)
UNCHECKED = Vocabulary.build(customer={"age": "number"})
"""A vocabulary made outside a rule set: event attributes are not declared, so not checked."""


def event(type_: str, ts: int | None = None, **attributes: Any) -> Event:
    return Event("e1", "c1", type_, ts, None, attributes)


def refused(e: Event, vocab: Vocabulary = VOCAB, where: str = "", equity: EquityConfig | None = None) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        effects_of(e, vocab, T0, where, equity)
    return caught.value


# -- ts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [2**62, MAX_TS + 1, 2**63 - 1, -1])
def test_a_ts_no_calendar_date_can_name_is_refused_whatever_the_event(ts: int) -> None:
    for e in (event("idea", ts, topic="wifi"), event("page_view", ts), event("purchase", ts, amount=5)):
        assert refused(e, where="events[2].").field == "events[2].ts"


def test_the_ts_bounds_themselves_are_accepted_and_a_missing_ts_is_now() -> None:
    assert effects_of(event("idea", MAX_TS, topic="wifi"), VOCAB, T0).ts == MAX_TS
    assert effects_of(event("page_view", 0), VOCAB, T0).ts == 0
    assert effects_of(event("page_view"), VOCAB, T0).ts == T0


# -- declared attribute types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e", "name"),
    [
        (event("page_view", page=5), "page"),
        (event("flight_delayed", delay_minutes=20, flight=123), "flight"),
        (event("purchase", amount=5, order_id=17), "order_id"),
        (event("purchase", amount=5, clears_cart="no"), "clears_cart"),
        (event("survey", nps="ten"), "nps"),
        (event("survey", csat=2**60), "csat"),
        (event("ticket_scan", gate=["A"]), "gate"),
        (event("ticket_scan", row=float("inf")), "row"),
    ],
)
def test_a_declared_attribute_of_another_type_is_refused_naming_it(e: Event, name: str) -> None:
    error = refused(e)
    assert error.field == f"attributes.{name}"
    assert f"`{name}`" in error.message


def test_undeclared_attributes_and_unknown_values_pass() -> None:
    effects_of(event("page_view", page="/home", referrer={"any": ["shape"]}), VOCAB, T0)
    effects_of(event("page_view", page=None), VOCAB, T0)
    effects_of(event("question_answered", question="favourite", answer="gold"), VOCAB, T0)


def test_without_declared_attributes_their_types_are_not_checked() -> None:
    effects_of(event("page_view", page=5), UNCHECKED, T0)


def test_the_special_checks_still_come_first_with_their_own_messages() -> None:
    assert "from 0 to" in refused(event("purchase", amount="5")).message
    assert refused(event("cart_add", sku="A", qty=1.5)).message.startswith("`qty` must be a whole number")
    sentiment = refused(event("social_mention", sentiment=3), equity=EquityConfig.default())
    assert sentiment.field == "attributes.sentiment"


# -- reserved attribute names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ts", "type"])
@pytest.mark.parametrize("vocab", [VOCAB, UNCHECKED], ids=["declared", "undeclared"])
def test_an_attribute_cannot_pass_itself_off_as_the_events_time_or_type(name: str, vocab: Vocabulary) -> None:
    error = refused(Event("e1", "c1", "page_view", T0, None, {"page": "/", name: 1}), vocab, "events[0].")
    assert error.field == f"events[0].attributes.{name}"


# -- profile fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "name"),
    [
        ({"age": 2**60}, "age"),
        ({"age": 1e300}, "age"),
        ({"age": float("nan")}, "age"),
        ({"age": True}, "age"),
        ({"tier": 3}, "tier"),
        ({"email_opt_in": "yes"}, "email_opt_in"),
    ],
)
def test_a_profile_update_holds_customer_fields_to_their_declared_types(attributes: dict[str, Any], name: str) -> None:
    for vocab in (VOCAB, UNCHECKED) if name == "age" else (VOCAB,):
        error = refused(event("profile_update", **attributes), vocab)
        assert error.field == f"attributes.{name}"
        assert error.message.startswith(f"customer field `{name}` is ")


def test_a_profile_field_is_refused_as_a_context_field_of_the_same_type_is() -> None:
    with pytest.raises(InvalidInput) as context:
        Vocabulary.build(context={"age": "number"}).check_fields("context", {"age": 2**60}, "context.")
    profile = refused(event("profile_update", age=2**60))
    assert profile.message.removeprefix("customer field") == context.value.message.removeprefix("context field")


def test_a_question_answer_of_another_type_than_its_field_is_refused() -> None:
    assert refused(event("question_answered", question="favourite", answer=4)).field == "attributes.answer"


def test_a_profile_update_within_the_declared_types_is_set() -> None:
    fx = effects_of(event("profile_update", age=2**53, tier="gold", email_opt_in=False, nickname=7), VOCAB, T0)
    assert fx.profile_set == {"age": 2**53, "tier": "gold", "email_opt_in": False, "nickname": 7}


# -- topics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["compliment", "complaint", "idea"])
@pytest.mark.parametrize("topic", ["", "   ", "\t\n", "x" * 65, 5])
def test_a_topic_blank_too_long_or_not_text_is_refused(kind: str, topic: Any) -> None:
    assert refused(event(kind, topic=topic)).field == "attributes.topic"


def test_a_topic_is_stored_stripped_and_lowercased() -> None:
    assert effects_of(event("idea", topic="  Wi-Fi "), VOCAB, T0).voice == ("ideas", "wi-fi")
