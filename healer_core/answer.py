"""The three answers a verdict can give, and the rule that turns p_yes into one.

No pydantic here: the engine imports it on bare GPU hosts, and the slide service applies the
same rule to a slide's aggregated score.
"""

import math
from typing import Literal

Answer = Literal["yes", "no", "indeterminate"]


def answer_from_p_yes(p_yes: float | None, threshold: float = 0.5, band: float = 0.1) -> Answer:
    """yes above the threshold, no below it, indeterminate within `band` of it (or without p_yes).

    `band` is a half-width: with threshold 0.5 and band 0.1, 0.4 < p_yes < 0.6 is indeterminate.
    """
    if p_yes is None or not math.isfinite(p_yes):
        return "indeterminate"
    if abs(p_yes - threshold) < band - 1e-9:  # tolerance: 0.6 - 0.5 is 0.0999… in binary
        return "indeterminate"
    return "yes" if p_yes >= threshold else "no"
