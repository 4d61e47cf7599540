"""The base of every document people write for the engine: rule files, rule test cases, model
specs, the equity section.

Unknown keys are errors (a typo must fail loudly, not be ignored), and a loaded document is
immutable, so one rule set or spec can be shared by every decision without copies.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
