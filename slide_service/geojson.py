"""The tiles as GeoJSON, in the shape QuPath imports (File → Import objects from file) and exports.

A FeatureCollection with one Feature per scored tile: a closed Polygon ring of the tile's square
in level-0 pixel coordinates (origin top-left, as QuPath and OpenSlide use), and QuPath's
properties:

    objectType      "tile"  (QuPath's PathTileObject, a detection: cheap to draw by the thousand)
    classification  {"name": "Tumor" | "Indeterminate" | "Non-tumor", "color": [r, g, b]}
                    by the tile's own answer under THRESHOLD / INDETERMINATE_BAND
    measurements    {"p_yes": ..., "tile_index": ...}  (QuPath ≥ 0.4's map form)
    name            "tile <index>"

`id` is a UUID derived from the job and the tile index, so the same slide always produces the
same file (QuPath reads it as the object's id). Other viewers take the same file as plain GeoJSON.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from healer_core.answer import answer_from_p_yes
from slide_service.aggregate import TileScore

CLASSES = {
    "yes": ("Tumor", [200, 0, 0]),
    "indeterminate": ("Indeterminate", [230, 160, 0]),
    "no": ("Non-tumor", [0, 120, 200]),
}
_NAMESPACE = uuid.UUID("6f1c1a52-9d4e-4a53-9a51-7c0e1d2b5a10")  # Healer tiles; fixed forever


def tiles_geojson(job_id: str, scores: Sequence[TileScore], threshold: float, band: float) -> dict[str, Any]:
    """The FeatureCollection of `scores` (serialise with json.dumps)."""
    return {"type": "FeatureCollection", "features": [_feature(job_id, s, threshold, band) for s in scores]}


def _feature(job_id: str, s: TileScore, threshold: float, band: float) -> dict[str, Any]:
    name, rgb = CLASSES[answer_from_p_yes(s.p_yes, threshold, band)]
    x0, y0, x1, y1 = s.x, s.y, s.x + s.w, s.y + s.h
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(_NAMESPACE, f"{job_id}/{s.index}")),
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "properties": {
            "objectType": "tile",
            "name": f"tile {s.index}",
            "classification": {"name": name, "color": rgb},
            "measurements": {"p_yes": round(float(s.p_yes), 6), "tile_index": s.index},
        },
    }
