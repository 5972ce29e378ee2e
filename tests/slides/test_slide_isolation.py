"""OpenSlide runs in child processes: a crash fails the slide (unreadable_slide), never the service;
a killed or hung child is a transient failure; a child's SlideRejected arrives as it was raised."""

from __future__ import annotations

import time

import pytest

from healer_core.schema import ErrorCode
from healer_media.errors import SlideRejected
from slide_service.isolation import ChildFailed, run_isolated
from tests.slides import children


def test_a_result_comes_back() -> None:
    assert run_isolated(children.double, (21,), timeout_s=60) == 42


def test_a_rejection_comes_back_with_its_code() -> None:
    with pytest.raises(SlideRejected) as info:
        run_isolated(children.reject, (), timeout_s=60)
    assert (info.value.code, info.value.message) == (ErrorCode.NO_TISSUE, "No tissue at all.")


def test_a_crash_is_an_unreadable_slide() -> None:
    with pytest.raises(SlideRejected) as info:
        run_isolated(children.crash, (), timeout_s=60)
    assert info.value.code == ErrorCode.UNREADABLE_SLIDE and "SIGSEGV" in info.value.message


def test_a_kill_or_a_bug_is_transient_and_says_no_more_than_its_type() -> None:
    with pytest.raises(ChildFailed, match="died"):
        run_isolated(children.killed, (), timeout_s=60)
    with pytest.raises(ChildFailed) as info:
        run_isolated(children.bug, (), timeout_s=60)
    assert "KeyError" in str(info.value) and "PATIENT" not in str(info.value)


def test_a_hung_child_is_killed_at_its_budget() -> None:
    started = time.monotonic()
    with pytest.raises(ChildFailed, match="budget"):
        run_isolated(children.hang, (), timeout_s=3)
    assert time.monotonic() - started < 60
