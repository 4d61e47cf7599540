from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class BareRequest(_message.Message):
    __slots__ = ("customer_id",)
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    customer_id: str
    def __init__(self, customer_id: _Optional[str] = ...) -> None: ...

class BareResponse(_message.Message):
    __slots__ = ("profile_json",)
    PROFILE_JSON_FIELD_NUMBER: _ClassVar[int]
    profile_json: bytes
    def __init__(self, profile_json: _Optional[bytes] = ...) -> None: ...
