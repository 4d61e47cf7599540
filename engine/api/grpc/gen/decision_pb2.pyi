from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecideRequest(_message.Message):
    __slots__ = ("customer_id", "channel", "placement", "context", "limit", "event", "explain", "recent")
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    channel: str
    placement: str
    context: _struct_pb2.Struct
    limit: int
    event: _struct_pb2.Struct
    explain: bool
    recent: int
    def __init__(self, customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., placement: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., limit: _Optional[int] = ..., event: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., explain: _Optional[bool] = ..., recent: _Optional[int] = ...) -> None: ...

class Treatment(_message.Message):
    __slots__ = ("id", "kind", "group", "score", "propensity", "content", "selection_probability")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SELECTION_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    group: str
    score: float
    propensity: float
    content: _struct_pb2.Struct
    selection_probability: float
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., group: _Optional[str] = ..., score: _Optional[float] = ..., propensity: _Optional[float] = ..., content: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., selection_probability: _Optional[float] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("treatment_id", "stage", "reason", "detail", "components")
    class ComponentsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TREATMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    treatment_id: str
    stage: str
    reason: str
    detail: _struct_pb2.Struct
    components: _containers.ScalarMap[str, float]
    def __init__(self, treatment_id: _Optional[str] = ..., stage: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., components: _Optional[_Mapping[str, float]] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decision_id", "customer_id", "channel", "placement", "treatments", "rules_version", "degraded", "fallback", "explanations", "model_version", "cart_adjustments", "customer_value", "arm", "recent")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    TREATMENTS_FIELD_NUMBER: _ClassVar[int]
    RULES_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CART_ADJUSTMENTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_VALUE_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    customer_id: str
    channel: str
    placement: str
    treatments: _containers.RepeatedCompositeFieldContainer[Treatment]
    rules_version: str
    degraded: bool
    fallback: bool
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    model_version: str
    cart_adjustments: _containers.RepeatedCompositeFieldContainer[CartAdjustment]
    customer_value: CustomerValue
    arm: str
    recent: _containers.RepeatedCompositeFieldContainer[Interaction]
    def __init__(self, decision_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., channel: _Optional[str] = ..., placement: _Optional[str] = ..., treatments: _Optional[_Iterable[_Union[Treatment, _Mapping]]] = ..., rules_version: _Optional[str] = ..., degraded: _Optional[bool] = ..., fallback: _Optional[bool] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., model_version: _Optional[str] = ..., cart_adjustments: _Optional[_Iterable[_Union[CartAdjustment, _Mapping]]] = ..., customer_value: _Optional[_Union[CustomerValue, _Mapping]] = ..., arm: _Optional[str] = ..., recent: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ...) -> None: ...

class CustomerValue(_message.Message):
    __slots__ = ("contribution", "perception", "referral", "loyalty", "equity", "tier", "p_alive", "expected_purchases", "clv")
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    PERCEPTION_FIELD_NUMBER: _ClassVar[int]
    REFERRAL_FIELD_NUMBER: _ClassVar[int]
    LOYALTY_FIELD_NUMBER: _ClassVar[int]
    EQUITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    P_ALIVE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_PURCHASES_FIELD_NUMBER: _ClassVar[int]
    CLV_FIELD_NUMBER: _ClassVar[int]
    contribution: float
    perception: float
    referral: float
    loyalty: float
    equity: float
    tier: str
    p_alive: float
    expected_purchases: float
    clv: float
    def __init__(self, contribution: _Optional[float] = ..., perception: _Optional[float] = ..., referral: _Optional[float] = ..., loyalty: _Optional[float] = ..., equity: _Optional[float] = ..., tier: _Optional[str] = ..., p_alive: _Optional[float] = ..., expected_purchases: _Optional[float] = ..., clv: _Optional[float] = ...) -> None: ...

class CartAdjustment(_message.Message):
    __slots__ = ("treatment_id", "coupon", "lines", "discount")
    TREATMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COUPON_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    treatment_id: str
    coupon: str
    lines: _containers.RepeatedCompositeFieldContainer[AdjustedLine]
    discount: float
    def __init__(self, treatment_id: _Optional[str] = ..., coupon: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[AdjustedLine, _Mapping]]] = ..., discount: _Optional[float] = ...) -> None: ...

class AdjustedLine(_message.Message):
    __slots__ = ("sku", "qty", "price", "discount")
    SKU_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    sku: str
    qty: int
    price: float
    discount: float
    def __init__(self, sku: _Optional[str] = ..., qty: _Optional[int] = ..., price: _Optional[float] = ..., discount: _Optional[float] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "customer_id", "type", "ts", "channel", "attributes")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    customer_id: str
    type: str
    ts: int
    channel: str
    attributes: _struct_pb2.Struct
    def __init__(self, event_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., type: _Optional[str] = ..., ts: _Optional[int] = ..., channel: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RecordEventsRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("accepted", "duplicates")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("feedback_id", "decision_id", "treatment_id", "outcome", "value", "ts")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    TREATMENT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    decision_id: str
    treatment_id: str
    outcome: str
    value: float
    ts: int
    def __init__(self, feedback_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., treatment_id: _Optional[str] = ..., outcome: _Optional[str] = ..., value: _Optional[float] = ..., ts: _Optional[int] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("accepted", "duplicate")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    duplicate: bool
    def __init__(self, accepted: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GetCustomerRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class CartLine(_message.Message):
    __slots__ = ("qty", "price", "name", "added")
    QTY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    qty: int
    price: float
    name: str
    added: int
    def __init__(self, qty: _Optional[int] = ..., price: _Optional[float] = ..., name: _Optional[str] = ..., added: _Optional[int] = ...) -> None: ...

class Cart(_message.Message):
    __slots__ = ("value", "items", "skus", "lines")
    class LinesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: CartLine
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[CartLine, _Mapping]] = ...) -> None: ...
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SKUS_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    value: float
    items: int
    skus: _containers.RepeatedScalarFieldContainer[str]
    lines: _containers.MessageMap[str, CartLine]
    def __init__(self, value: _Optional[float] = ..., items: _Optional[int] = ..., skus: _Optional[_Iterable[str]] = ..., lines: _Optional[_Mapping[str, CartLine]] = ...) -> None: ...

class Suppression(_message.Message):
    __slots__ = ("group", "policy", "until")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    group: str
    policy: str
    until: int
    def __init__(self, group: _Optional[str] = ..., policy: _Optional[str] = ..., until: _Optional[int] = ...) -> None: ...

class Interaction(_message.Message):
    __slots__ = ("event_id", "type", "ts", "channel", "attributes")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    type: str
    ts: int
    channel: str
    attributes: _struct_pb2.Struct
    def __init__(self, event_id: _Optional[str] = ..., type: _Optional[str] = ..., ts: _Optional[int] = ..., channel: _Optional[str] = ..., attributes: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetCustomerResponse(_message.Message):
    __slots__ = ("customer_id", "known", "profile", "cart", "suppressions", "recent", "responses", "purchases", "orders", "value")
    class ResponsesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CART_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    PURCHASES_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    known: bool
    profile: _struct_pb2.Struct
    cart: Cart
    suppressions: _containers.RepeatedCompositeFieldContainer[Suppression]
    recent: _containers.RepeatedCompositeFieldContainer[Interaction]
    responses: _containers.ScalarMap[str, int]
    purchases: _containers.RepeatedCompositeFieldContainer[Interaction]
    orders: _containers.RepeatedCompositeFieldContainer[OrderStatus]
    value: CustomerValue
    def __init__(self, customer_id: _Optional[str] = ..., known: _Optional[bool] = ..., profile: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., cart: _Optional[_Union[Cart, _Mapping]] = ..., suppressions: _Optional[_Iterable[_Union[Suppression, _Mapping]]] = ..., recent: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ..., responses: _Optional[_Mapping[str, int]] = ..., purchases: _Optional[_Iterable[_Union[Interaction, _Mapping]]] = ..., orders: _Optional[_Iterable[_Union[OrderStatus, _Mapping]]] = ..., value: _Optional[_Union[CustomerValue, _Mapping]] = ...) -> None: ...

class OrderStatus(_message.Message):
    __slots__ = ("order_id", "status", "ts")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: str
    ts: int
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[str] = ..., ts: _Optional[int] = ...) -> None: ...
