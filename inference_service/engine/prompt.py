"""The versioned prompts, the parsers of what the model writes, and the answer rule.

Two prompts, each with its own version stored next to what it produced:

- the tile verdict (PROMPT_TEXT, PROMPT_VERSION): the verdict itself comes from `p_yes` (next-token
  logits of Yes vs No at the answer position); the generated text only supplies the one-sentence
  explanation, and the answer when no `p_yes` exists;
- the slide report (REPORT_PROMPT_TEXT, REPORT_PROMPT_VERSION): one prompt with many tiles of a
  slide, answered by a short free-text description.

Changing a prompt's text changes what it produces: bump its version with it.
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

# MedGemma 1.5 may open a thinking trace unprompted: `<unused94>thought\n…`, closed (rarely) by
# `<unused95>`. Google's own notebook strips it (cxr_anatomy_localization_with_hugging_face.ipynb).
# The engine suppresses the opening token while generating; this is the parsers' second line.
THINKING_START = "<unused94>"
THINKING_END = "<unused95>"

# The slide report: Google's whole-slide prompt for MedGemma 1.5, word for word but for the
# procedure, which a slide file does not tell us (notebook high_dimensional_pathology_hugging_face
# .ipynb: the instruction first, then the patches). MedGemma's model card warns it is sensitive to
# the prompt's wording, so the one Google published for this task is kept.
REPORT_PROMPT_VERSION = "crc-report-v1"
REPORT_PROMPT_TEXT = (
    "You are an instructor teaching medical students. For education purposes, provide a brief "
    "descriptive text for the set of pathology patches extracted from a pathology slide. Consider "
    "the tissue type (below) when deciding what to include in the descriptive text.\ncolon:"
)
MAX_REPORT_CHARS = 4000


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


def strip_thinking(text: str) -> str:
    """`text` without a thinking trace: what follows `<unused95>`, or "" if the trace never closed.

    Text before an opening `<unused94>` is kept; a lone closing marker drops what came before it.
    """
    before, opened, after = text.partition(THINKING_START)
    if opened:
        _, closed, answer = after.partition(THINKING_END)
        return (before + answer) if closed else before
    before, closed, answer = text.partition(THINKING_END)
    return answer if closed else text


def clean_report(text: str | None, max_chars: int = MAX_REPORT_CHARS) -> str:
    """The report as stored: no thinking trace, trimmed, whitespace runs kept to paragraphs, bounded."""
    if not text:
        return ""
    text = strip_thinking(text)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    cleaned = "\n\n".join(p for p in paragraphs if p)
    if len(cleaned) > max_chars:
        cleaned = cleaned[:max_chars].rsplit(" ", 1)[0] + "…"
    return cleaned


def parse_generated(text: str | None) -> ParsedText:
    """Parse the model's reply, tolerant of case, punctuation, markdown and preambles.

    "Yes. Crowded glands…", "**no** — normal mucosa.", "Answer: yes." and "Based on the image,
    the answer is no." all parse; empty or unparseable text gives `indeterminate`, never an error.
    """
    text = strip_thinking(text) if text else text
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


def explanation_complete(text: str) -> bool:
    """Whether no further text can change what `parse_generated` makes of `text`: it opens with the
    answer word and the explanation's first sentence has ended (at `.`, `!` or `?` followed by
    whitespace, or at a blank line). Then generation may stop early with the same stored result.

    Conservative: a thinking marker, a "yes or no" opening or no leading answer word never completes.
    """
    if THINKING_START in text or THINKING_END in text:
        return False
    cleaned = text.replace("*", "").replace("_", " ").replace("`", "").lstrip()
    cleaned = _PREAMBLE.sub("", cleaned, count=1)
    leading = None if _BOTH.match(cleaned) else _LEADING_WORD.match(cleaned)
    if not leading:
        return False
    rest = cleaned[leading.end() :].lstrip()
    paragraph, blank, _ = rest.partition("\n\n")
    # No strip at the end (unlike `first_sentence`): whitespace already written after the
    # punctuation ends the sentence for every continuation.
    return bool(paragraph.strip() and (blank or _SENTENCE_END.search(paragraph)))


def decide(p_yes: float | None, parsed: ParsedText | None, threshold: float, band: float) -> Answer:
    """The verdict: from p_yes when the model gave a finite one, else from the parsed text."""
    if p_yes is not None and math.isfinite(p_yes):
        return answer_from_p_yes(p_yes, threshold, band)
    return parsed.answer if parsed is not None else "indeterminate"


def _capitalize(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:] if sentence else sentence
