import OpenSeadragon from "openseadragon";
import { useEffect, useMemo, useRef, useState } from "react";
import { fetchHeatmapOverlay, slideProblem, slideUrl, type HeatmapOverlay, type TileScore } from "../api";
import { GRADIENT, pYesColour } from "../colormap";

/** A request to move the viewer to one tile; `seq` makes a second click on the same tile count. */
export interface Focus {
  tile: TileScore;
  seq: number;
}

interface Hover {
  tile: TileScore;
  x: number;
  y: number;
}

/** A tile's square in level-0 pixels; the stroke keeps its width at any zoom. */
function TileOutline({ tile, stroke, width, dashed = false }: { tile: TileScore; stroke: string; width: number; dashed?: boolean }) {
  return (
    <rect
      x={tile.x}
      y={tile.y}
      width={tile.w}
      height={tile.h}
      fill="none"
      stroke={stroke}
      strokeWidth={width}
      strokeDasharray={dashed ? "6 4" : undefined}
      vectorEffect="non-scaling-stroke"
    />
  );
}

/**
 * The slide at full resolution (OpenSeadragon over the console's Deep Zoom tiles), with the
 * heatmap laid over it and the scored tiles outlined in their p(yes) colour.
 *
 * Deep Zoom coordinates are the slide's level-0 pixels (the backend does not crop to bounds), so
 * the heatmap (placed by the level-0 extent the backend reads from the PNG), the GeoJSON tiles and
 * the top tiles all map through the slide's own image coordinates. The host element carries
 * `data-bounds` (the visible level-0 rectangle), `data-loaded` and `data-overlay`, which the browser
 * test reads.
 */
export function SlideViewer({ jobId, tiles, hasHeatmap, focus }: {
  jobId: string;
  tiles: TileScore[] | null;
  hasHeatmap: boolean;
  focus: Focus | null;
}) {
  const host = useRef<HTMLDivElement>(null);
  const group = useRef<SVGGElement>(null);
  const viewerRef = useRef<OpenSeadragon.Viewer | null>(null);
  const slideRef = useRef<OpenSeadragon.TiledImage | null>(null);
  const heatRef = useRef<OpenSeadragon.TiledImage | null>(null);
  const [ready, setReady] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [overlay, setOverlay] = useState<HeatmapOverlay | null>(null);
  const [showHeatmap, setShowHeatmap] = useState(true);
  const [opacity, setOpacity] = useState(0.45);
  const [showOutlines, setShowOutlines] = useState(true);
  const [hover, setHover] = useState<Hover | null>(null);

  // The viewer itself: one per job.
  useEffect(() => {
    const element = host.current;
    if (!element) return;
    setReady(false);
    setProblem(null);
    const viewer = OpenSeadragon({
      element,
      tileSources: slideUrl(jobId, "slide.dzi"),
      drawer: "canvas",
      showNavigationControl: false,
      maxZoomPixelRatio: 2,
      visibilityRatio: 0.5,
      animationTime: 0.5,
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
    });
    viewerRef.current = viewer;

    // Keep the SVG of tile outlines on the slide: image pixels → viewer element pixels.
    const follow = () => {
      const slide = slideRef.current;
      if (!slide || !group.current) return;
      const origin = slide.imageToViewerElementCoordinates(new OpenSeadragon.Point(0, 0));
      const unit = slide.imageToViewerElementCoordinates(new OpenSeadragon.Point(1000, 0));
      group.current.setAttribute("transform", `translate(${origin.x} ${origin.y}) scale(${(unit.x - origin.x) / 1000})`);
    };
    const publishBounds = () => {
      const slide = slideRef.current;
      if (!slide) return;
      const b = slide.viewportToImageRectangle(viewer.viewport.getBounds(true));
      element.dataset.bounds = [b.x, b.y, b.width, b.height].map((v) => v.toFixed(1)).join(",");
    };
    viewer.addHandler("open", () => {
      const slide = viewer.world.getItemAt(0);
      slideRef.current = slide;
      slide.addHandler("fully-loaded-change", (event) => {
        element.dataset.loaded = String((event as unknown as { fullyLoaded: boolean }).fullyLoaded);
      });
      follow();
      publishBounds();
      setReady(true);
    });
    viewer.addHandler("open-failed", () => {
      void slideProblem(jobId).then((text) => setProblem(text ?? "The slide cannot be shown."));
    });
    viewer.addHandler("update-viewport", follow);
    viewer.addHandler("animation-finish", publishBounds);
    viewer.addHandler("resize", publishBounds);

    return () => {
      viewer.destroy();
      viewerRef.current = null;
      slideRef.current = null;
      heatRef.current = null;
      delete element.dataset.bounds;
      delete element.dataset.loaded;
      delete element.dataset.overlay;
    };
  }, [jobId]);

  // The heatmap PNG's slide part, once the verdict has one.
  useEffect(() => {
    if (!hasHeatmap) return;
    const controller = new AbortController();
    let url: string | null = null;
    fetchHeatmapOverlay(jobId, controller.signal).then(
      (loaded) => {
        url = loaded.objectUrl;
        setOverlay(loaded);
      },
      () => setOverlay(null),
    );
    return () => {
      controller.abort();
      if (url) URL.revokeObjectURL(url);
      setOverlay(null);
    };
  }, [jobId, hasHeatmap]);

  // Lay the heatmap over the slide: its level-0 extent, in viewport units (slide width = 1).
  useEffect(() => {
    const viewer = viewerRef.current;
    const slide = slideRef.current;
    if (!ready || !viewer || !slide || !overlay) return;
    viewer.addTiledImage({
      tileSource: { type: "image", url: overlay.objectUrl, buildPyramid: false },
      x: 0,
      y: 0,
      width: overlay.width0 / slide.getContentSize().x,
      opacity: 0,
      success: (event: unknown) => {
        heatRef.current = (event as { item: OpenSeadragon.TiledImage }).item;
        heatRef.current.addHandler("fully-loaded-change", () => {
          if (host.current) host.current.dataset.overlay = "ready";
        });
        heatRef.current.setOpacity(showHeatmap ? opacity : 0);
      },
    } as OpenSeadragon.TileSourceSpecifier);
    return () => {
      if (heatRef.current) viewer.world.removeItem(heatRef.current);
      heatRef.current = null;
      if (host.current) delete host.current.dataset.overlay;
    };
    // Opacity and visibility are applied by the effect below, without re-adding the image.
  }, [ready, overlay]);

  useEffect(() => {
    heatRef.current?.setOpacity(showHeatmap ? opacity : 0);
  }, [showHeatmap, opacity]);

  // Move to a tile the gallery asked for: the tile and half a tile around it.
  useEffect(() => {
    const viewer = viewerRef.current;
    const slide = slideRef.current;
    if (!ready || !viewer || !slide || !focus) return;
    const { x, y, w, h } = focus.tile;
    viewer.viewport.fitBounds(slide.imageToViewportRectangle(x - w / 2, y - h / 2, w * 2, h * 2));
  }, [ready, focus]);

  // Thousands of outlines: built once per tile set, so a hover re-render does not rebuild them.
  const outlines = useMemo(
    () =>
      (tiles ?? []).map((t) => <TileOutline key={t.index} tile={t} stroke={pYesColour(t.p_yes)} width={1.5} />),
    [tiles],
  );

  // Hover: which scored tile is under the pointer, and its p(yes). Listened to in the capture phase
  // on the frame, so the viewer's own pointer handling (pan, zoom) is left alone.
  const onPointerMove = (event: React.PointerEvent<HTMLDivElement>) => {
    const slide = slideRef.current;
    if (!slide || !tiles || !host.current) return;
    const frame = host.current.getBoundingClientRect();
    const x = event.clientX - frame.left;
    const y = event.clientY - frame.top;
    const p = slide.viewerElementToImageCoordinates(new OpenSeadragon.Point(x, y));
    const tile = tiles.find((t) => p.x >= t.x && p.x < t.x + t.w && p.y >= t.y && p.y < t.y + t.h);
    setHover(tile ? { tile, x, y } : null);
  };

  const zoom = (factor: number) => viewerRef.current?.viewport.zoomBy(factor).applyConstraints();
  return (
    <div className="space-y-2">
      <div className="flex flex-wrap items-center gap-x-4 gap-y-2 text-xs text-slate-600">
        <div className="flex overflow-hidden rounded-md border border-slate-300">
          <button className="px-2.5 py-1 hover:bg-slate-100" onClick={() => zoom(1.6)} aria-label="Zoom in">
            +
          </button>
          <button className="border-x border-slate-300 px-2.5 py-1 hover:bg-slate-100" onClick={() => zoom(1 / 1.6)} aria-label="Zoom out">
            −
          </button>
          <button className="px-2.5 py-1 hover:bg-slate-100" onClick={() => viewerRef.current?.viewport.goHome()} data-testid="viewer-home">
            Whole slide
          </button>
        </div>
        <label className={`flex items-center gap-1.5 ${overlay ? "" : "opacity-40"}`}>
          <input type="checkbox" data-testid="toggle-heatmap" checked={showHeatmap} disabled={!overlay} onChange={(e) => setShowHeatmap(e.target.checked)} />
          Heatmap
        </label>
        <label className={`flex items-center gap-1.5 ${overlay ? "" : "opacity-40"}`}>
          Opacity
          <input
            type="range"
            data-testid="heatmap-opacity"
            min={0}
            max={100}
            value={Math.round(opacity * 100)}
            disabled={!overlay || !showHeatmap}
            onChange={(e) => setOpacity(Number(e.target.value) / 100)}
            className="w-28 accent-teal-600"
          />
          <span className="w-8 tabular-nums">{Math.round(opacity * 100)}%</span>
        </label>
        <label className={`flex items-center gap-1.5 ${tiles ? "" : "opacity-40"}`}>
          <input type="checkbox" data-testid="toggle-outlines" checked={showOutlines} disabled={!tiles} onChange={(e) => setShowOutlines(e.target.checked)} />
          Tile outlines
        </label>
        <span className="ml-auto flex items-center gap-1.5">
          p(yes) 0
          <span className="inline-block h-2.5 w-28 rounded-sm" style={{ background: GRADIENT }} />1
        </span>
      </div>
      <div
        className="relative h-[600px] overflow-hidden rounded-lg bg-slate-900"
        data-testid="viewer-frame"
        onPointerMoveCapture={onPointerMove}
        onPointerLeave={() => setHover(null)}
      >
        <div ref={host} className="absolute inset-0" data-testid="slide-viewer" />
        <svg className="pointer-events-none absolute inset-0 h-full w-full" aria-hidden="true">
          <g ref={group} data-testid="tile-outlines" visibility={showOutlines ? "visible" : "hidden"}>
            {outlines}
            {focus && <TileOutline tile={focus.tile} stroke="#0f172a" width={3} dashed />}
            {hover && <TileOutline tile={hover.tile} stroke="white" width={3} />}
          </g>
        </svg>
        {hover && (
          <div
            data-testid="tile-tooltip"
            className="pointer-events-none absolute z-10 rounded bg-slate-900/90 px-2 py-1 text-xs text-white shadow"
            style={{ left: hover.x + 14, top: hover.y + 14 }}
          >
            tile {hover.tile.index} · p(yes) <strong className="tabular-nums">{hover.tile.p_yes.toFixed(3)}</strong>
          </div>
        )}
        {problem && (
          <div className="absolute inset-0 flex items-center justify-center p-8 text-center text-sm text-rose-100" data-testid="viewer-problem">
            {problem}
          </div>
        )}
      </div>
    </div>
  );
}
