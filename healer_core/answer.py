"""The three answers a verdict can give (no pydantic here: the engine imports it on bare GPU hosts)."""

from typing import Literal

Answer = Literal["yes", "no", "indeterminate"]
