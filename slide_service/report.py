"""The slide report's start, on the slide service: which tiles, and the `report` task.

At finalize every tile's score is at hand, so this is where the report's tiles are chosen
(`healer_core.report_selection`, the one implementation of the rule) and recorded with the
verdict: `report = {status: pending, patches, tiles: [{index, x, y, w, h, shard, p_yes, top}]}`.
Once the verdict is written (job `done`), `finalize.run_finalize` publishes a `report` task to
JOBS_TOPIC; the inference service reads exactly those tiles from their shard objects and writes
the report (`inference_service/report_worker.py`). The report never delays or changes the verdict.

The switch lives here: SLIDE_REPORT_PATCHES on the slide service decides pending (N tiles) or
off (0: `report = {status: off}`, no message). The inference service's SLIDE_REPORT_PATCHES is
the most tiles its engine takes in one prompt; Terraform and the local stack give both services
the same value.
"""

from __future__ import annotations

from collections.abc import Sequence

from healer_core.report_selection import select_report_patches
from healer_core.schema import Report, ReportStatus, ReportTile, Shard


def initial_report(job_id: str, shards: Sequence[Shard], patches: int) -> Report:
    """The report block a new slide verdict starts with: off for 0 patches, else pending with the
    chosen tiles (prompt order). `shards` are the slide's scored shards (their tiles and scores)."""
    if patches == 0:
        return Report(status=ReportStatus.OFF.value)
    where: dict[int, tuple[Shard, int]] = {}
    for shard in shards:
        for position, tile in enumerate(shard.tiles):
            where[tile.index] = (shard, position)
    scores = {index: _score(shard, position) for index, (shard, position) in where.items()}
    selection = select_report_patches(scores, patches, job_id)
    top = set(selection.top)
    tiles = []
    for index in selection.indices:
        shard, position = where[index]
        t = shard.tiles[position]
        tiles.append(
            ReportTile(index=index, x=t.x, y=t.y, w=t.w, h=t.h, shard=shard.n, p_yes=scores[index], top=index in top)
        )
    return Report(status=ReportStatus.PENDING.value, patches=len(tiles), tiles=tiles)


def _score(shard: Shard, position: int) -> float | None:
    return shard.scores[position] if shard.scores is not None and position < len(shard.scores) else None
