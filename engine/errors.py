"""One exception tree for the whole engine.

Each class carries the HTTP status and the gRPC status *name* it maps to, so both front ends
translate errors in one place and the core never imports a web or RPC framework.
"""

from __future__ import annotations

from dataclasses import dataclass

QUOTE_CHARS = 64


def quoted(value: object, limit: int = QUOTE_CHARS) -> str:
    """A client's value as an error message quotes it: `repr` of a short one; of a long one, the
    first `limit` characters, an ellipsis and its length.

    Messages quote what was refused so the client can see it, but quoting all of a 20,000-character
    value would make the message too long to deliver (gRPC drops a status message beyond its
    metadata limits) and to log.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"
    code: str = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidInput(EngineError):
    """A request field has a value the engine cannot accept."""

    http_status = 422
    grpc_code = "INVALID_ARGUMENT"
    code = "invalid_input"


class NotFound(EngineError):
    """The request refers to something the engine does not know (or no longer keeps)."""

    http_status = 404
    grpc_code = "NOT_FOUND"
    code = "not_found"


class Overloaded(EngineError):
    """The engine sheds load rather than answer late."""

    http_status = 503
    grpc_code = "RESOURCE_EXHAUSTED"
    code = "overloaded"


class NotReady(EngineError):
    """The engine has no rule set or no store yet."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "not_ready"


class StoreUnavailable(EngineError):
    """The state store did not answer; the caller may retry."""

    http_status = 503
    grpc_code = "UNAVAILABLE"
    code = "store_unavailable"


@dataclass(frozen=True, slots=True)
class SourcePos:
    """Where something sits in a rule file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One error found in a rule set, positioned so a marketer can jump to it."""

    pos: SourcePos | None
    message: str
    source_line: str | None = None
    hint: str | None = None

    def render(self) -> str:
        where = f"{self.pos}: " if self.pos else ""
        text = f"{where}{self.message}"
        if self.source_line is not None and self.pos is not None:
            caret = " " * (max(self.pos.column, 1) - 1) + "^"
            text += f"\n    {self.source_line}\n    {caret}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class RuleSetError(EngineError):
    """A rule set failed to load; carries every problem found, not just the first."""

    code = "invalid_rules"

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        listing = "\n".join(p.render() for p in problems)
        super().__init__(f"rule set refused with {len(problems)} error(s):\n{listing}")
