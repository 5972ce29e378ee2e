"""The prompt constant, the tolerant parser and the answer rule: pure functions."""

from __future__ import annotations

import math

import pytest

from inference_service.engine.prompt import (
    PROMPT_TEXT,
    PROMPT_VERSION,
    ParsedText,
    answer_from_p_yes,
    decide,
    first_sentence,
    parse_generated,
)


def test_prompt_is_versioned_and_asks_for_yes_no_and_one_sentence() -> None:
    assert PROMPT_VERSION.startswith("crc-v")
    assert "Yes or No" in PROMPT_TEXT
    assert "one sentence" in PROMPT_TEXT


@pytest.mark.parametrize(
    ("text", "answer", "explanation"),
    [
        ("Yes. Crowded irregular glands. Second sentence.", "yes", "Crowded irregular glands."),
        ("No, the mucosa is normal.", "no", "The mucosa is normal."),
        ("yes", "yes", ""),
        ("NO.", "no", ""),
        ("**Yes** — invasive glands in the stroma.", "yes", "Invasive glands in the stroma."),
        ("Answer: yes. Atypical nuclei.", "yes", "Atypical nuclei."),
        ("Final answer - No: adipose tissue only.", "no", "Adipose tissue only."),
        ("  \n Yes!\nPleomorphic nuclei are seen.", "yes", "Pleomorphic nuclei are seen."),
        ("Based on the image, the answer is no.", "no", "Based on the image, the answer is no."),
        ("This shows adenocarcinoma, yes.", "yes", "This shows adenocarcinoma, yes."),
        ("Not sure what this shows.", "indeterminate", "Not sure what this shows."),
        ("Yes or no cannot be decided.", "indeterminate", "Yes or no cannot be decided."),
        ("Nope", "indeterminate", "Nope"),
        ("Yesterday's slide.", "indeterminate", "Yesterday's slide."),
    ],
)
def test_parse_generated_is_tolerant(text: str, answer: str, explanation: str) -> None:
    assert parse_generated(text) == ParsedText(answer, explanation)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", None, "   ", "\n\n", "...", "?!", "<unk><unk>", "\x00\x01"])
def test_empty_or_garbage_is_indeterminate_never_an_error(text: str | None) -> None:
    assert parse_generated(text).answer == "indeterminate"


def test_first_sentence_is_one_line_and_bounded() -> None:
    assert first_sentence("One\nline. Two.") == "One line."
    assert first_sentence("3.5 mm glands. Next.") == "3.5 mm glands."
    long = first_sentence("word " * 500, max_chars=50)
    assert len(long) <= 51 and long.endswith("…")


@pytest.mark.parametrize(
    ("p", "answer"),
    [(0.0, "no"), (0.39, "no"), (0.41, "indeterminate"), (0.5, "indeterminate"), (0.6, "yes"), (1.0, "yes")],
)
def test_answer_from_p_yes_with_band(p: float, answer: str) -> None:
    assert answer_from_p_yes(p, threshold=0.5, band=0.1) == answer


def test_answer_without_band_and_custom_threshold() -> None:
    assert answer_from_p_yes(0.5, 0.5, 0.0) == "yes"
    assert answer_from_p_yes(0.49, 0.5, 0.0) == "no"
    assert answer_from_p_yes(0.7, 0.8, 0.05) == "no"


@pytest.mark.parametrize("p", [None, math.nan, math.inf])
def test_missing_p_yes_is_indeterminate(p: float | None) -> None:
    assert answer_from_p_yes(p) == "indeterminate"


def test_decide_prefers_p_yes_and_falls_back_to_text() -> None:
    parsed = ParsedText("no", "Normal mucosa.")
    assert decide(0.9, parsed, 0.5, 0.1) == "yes"
    assert decide(None, parsed, 0.5, 0.1) == "no"
    assert decide(math.nan, parsed, 0.5, 0.1) == "no"
    assert decide(None, None, 0.5, 0.1) == "indeterminate"
