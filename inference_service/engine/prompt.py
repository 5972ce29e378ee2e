"""The versioned prompt, the parser of what the model writes, and the answer rule.

The verdict itself comes from `p_yes` (next-token logits of Yes vs No at the answer position);
the generated text only supplies the one-sentence explanation, and the answer when no `p_yes`
exists. Changing PROMPT_TEXT changes the verdicts: bump PROMPT_VERSION with it, since every
verdict stores the version it was made with.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# The answer rule lives in healer_core (the slide service applies it too); re-exported here.
from healer_core.answer import Answer, answer_from_p_yes

PROMPT_VERSION = "crc-v1"

# Answer first, as one word, so the model's first token is Yes or No: that is the position whose
# logits give p_yes. One sentence keeps the explanation bounded (and cheap to generate).
PROMPT_TEXT = (
    "You are an expert pathologist. This is a colorectal histopathology image (H&E stain). "
    "Does it show colorectal cancer (adenocarcinoma)? "
    "Reply with Yes or No as the first word, then one sentence naming the key visual evidence."
)

# Word forms the engine looks up as single tokens of the tokenizer (Gemma has all of them).
YES_WORDS = ("Yes", "yes", "YES")
NO_WORDS = ("No", "no", "NO")

MAX_EXPLANATION_CHARS = 400

_PREAMBLE = re.compile(
    r"^\s*(?:(?:final\s+)?answer|verdict|response|diagnosis|assessment|model)\s*[:\-–—]\s*",
    re.IGNORECASE,
)
_LEADING_WORD = re.compile(r"^\W*(yes|no)\b\W*", re.IGNORECASE)
_BOTH = re.compile(r"^\W*(?:yes|no)\s*(?:or|/)\s*(?:yes|no)\b", re.IGNORECASE)
_ANSWER_IS = re.compile(r"\b(?:answer|verdict)\s+is\s*[:\-]?\s*\W*(yes|no)\b", re.IGNORECASE)
_ANY_YES = re.compile(r"\byes\b", re.IGNORECASE)
_ANY_NO = re.compile(r"\bno\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


@dataclass(frozen=True)
class ParsedText:
    """What the generated text says: its answer (or indeterminate) and its first sentence."""

    answer: Answer
    explanation: str


def first_sentence(text: str, max_chars: int = MAX_EXPLANATION_CHARS) -> str:
    """The first sentence of `text`, on one line, at most `max_chars` long."""
    text = text.strip().split("\n\n", 1)[0]
    text = " ".join(text.split())
    match = _SENTENCE_END.search(text)
    sentence = text[: match.start()] if match else text
    if len(sentence) > max_chars:
        sentence = sentence[:max_chars].rsplit(" ", 1)[0] + "…"
    return sentence.strip()


def parse_generated(text: str | None) -> ParsedText:
    """Parse the model's reply, tolerant of case, punctuation, markdown and preambles.

    "Yes. Crowded glands…", "**no** — normal mucosa.", "Answer: yes." and "Based on the image,
    the answer is no." all parse; empty or unparseable text gives `indeterminate`, never an error.
    """
    if not text:
        return ParsedText("indeterminate", "")
    cleaned = text.replace("*", "").replace("_", " ").replace("`", "").strip()
    cleaned = _PREAMBLE.sub("", cleaned, count=1)
    leading = None if _BOTH.match(cleaned) else _LEADING_WORD.match(cleaned)
    if leading:
        answer: Answer = "yes" if leading.group(1).lower() == "yes" else "no"
        return ParsedText(answer, _capitalize(first_sentence(cleaned[leading.end() :])))
    sentence = first_sentence(cleaned)
    stated = _ANSWER_IS.search(cleaned)
    if stated:
        return ParsedText("yes" if stated.group(1).lower() == "yes" else "no", sentence)
    # A lone yes or no in the first sentence counts; both (or neither) means we cannot tell.
    has_yes, has_no = bool(_ANY_YES.search(sentence)), bool(_ANY_NO.search(sentence))
    if has_yes != has_no:
        return ParsedText("yes" if has_yes else "no", sentence)
    return ParsedText("indeterminate", sentence)


def decide(p_yes: float | None, parsed: ParsedText | None, threshold: float, band: float) -> Answer:
    """The verdict: from p_yes when the model gave a finite one, else from the parsed text."""
    if p_yes is not None and math.isfinite(p_yes):
        return answer_from_p_yes(p_yes, threshold, band)
    return parsed.answer if parsed is not None else "indeterminate"


def _capitalize(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] if sentence else sentence
