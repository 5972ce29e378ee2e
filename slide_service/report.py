"""The seam where the slide-level report (issue 13, MedGemma 1.5) plugs in.

Today every slide verdict carries `report: {status: "off"}`. The report step will: return
`Report(status="pending", patches=SLIDE_REPORT_PATCHES)` here when reports are on, and, once the
verdict is written (`finalize.run_finalize`), publish a `report` task (`JobMessage.for_task(
Task.REPORT)`, routed to JOBS_TOPIC) for the inference service, which writes
`verdict.slide.report` from the top tiles. The job is `done` with the verdict either way: the
report is an addition, never a precondition.
"""

from __future__ import annotations

from healer_core.schema import Report


def initial_report() -> Report:
    """The report block a new slide verdict starts with (off until issue 13 lands)."""
    return Report(status="off")
