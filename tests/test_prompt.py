"""The prompt constant, the tolerant parser and the answer rule: pure functions."""

from __future__ import annotations

import math

import pytest

from inference_service.engine.prompt import (
    MAX_REPORT_CHARS,
    PROMPT_TEXT,
    PROMPT_VERSION,
    REPORT_PROMPT_TEXT,
    REPORT_PROMPT_VERSION,
    ParsedText,
    answer_from_p_yes,
    clean_report,
    decide,
    first_sentence,
    parse_generated,
    strip_thinking,
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


def test_report_prompt_has_its_own_version() -> None:
    assert REPORT_PROMPT_VERSION.startswith("crc-report-v") and REPORT_PROMPT_VERSION != PROMPT_VERSION
    # Google's whole-slide wording (MedGemma is prompt-sensitive), the tissue on its own last line.
    assert "brief descriptive text for the set of pathology patches" in REPORT_PROMPT_TEXT
    assert REPORT_PROMPT_TEXT.endswith("\ncolon:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No trace here.", "No trace here."),
        ("<unused94>thought\nplan<unused95>Answer.", "Answer."),
        ("<unused94>thought\nthe budget ran out", ""),
        ("Lead. <unused94>thought\nmore", "Lead. "),
        ("plan only<unused95>Answer.", "Answer."),
        ("", ""),
    ],
)
def test_strip_thinking(text: str, expected: str) -> None:
    assert strip_thinking(text) == expected


def test_a_thinking_trace_is_not_an_explanation() -> None:
    assert parse_generated("<unused94>thought\n1. The user asks<unused95>Yes. Crowded glands.") == ParsedText(
        "yes", "Crowded glands."
    )
    assert parse_generated("<unused94>thought\n1. Yes, consider the glands") == ParsedText("indeterminate", "")


def test_clean_report_keeps_paragraphs_and_is_bounded() -> None:
    assert clean_report("  Colon mucosa.\n  Regular crypts. \n\n\n Impression:   benign. ") == (
        "Colon mucosa. Regular crypts.\n\nImpression: benign."
    )
    assert clean_report(None) == "" and clean_report("<unused94>thought\nunfinished") == ""
    long = clean_report("word " * 2000)
    assert len(long) <= MAX_REPORT_CHARS + 1 and long.endswith("…")
