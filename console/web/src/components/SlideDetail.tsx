import { useEffect, useState } from "react";
import { fetchTiles, slideUrl, topTileUrl, type JobDetail, type SlideReport, type TileScore } from "../api";
import { AnswerBadge, JobErrorBox, ProbabilityBar } from "./Badges";
import { SlideProgress } from "./SlideProgress";
import { SlideViewer, type Focus } from "./SlideViewer";

const REPORT_WORDS: Record<string, string> = {
  off: "No slide report: the report is switched off (SLIDE_REPORT_PATCHES = 0 on the slide service).",
  pending: "The slide report is being written…",
  failed: "The slide report could not be written.",
};

function Report({ report }: { report: SlideReport }) {
  if (report.status !== "done") {
    return (
      <p className="rounded-lg bg-slate-50 p-3 text-sm text-slate-600" data-testid="report" data-status={report.status}>
        {REPORT_WORDS[report.status] ?? `Report status: ${report.status}.`}
        {report.status === "pending" && report.patches > 0 && ` MedGemma reads ${report.patches} tiles of the slide in one prompt.`}
        {report.error && <span className="mt-1 block text-rose-700">{report.error}</span>}
      </p>
    );
  }
  return (
    <div data-testid="report" data-status="done">
      <p className="whitespace-pre-line rounded-lg bg-slate-50 p-3 text-sm leading-relaxed text-slate-700 [overflow-wrap:anywhere]">
        {report.text}
      </p>
      <p className="mt-2 text-xs text-slate-500">
        {report.model_id} · prompt {report.prompt_version} · {report.patches} patches
        {report.inference_ms ? ` · ${(report.inference_ms / 1000).toFixed(1)} s` : ""}
      </p>
    </div>
  );
}

/** A slide job: the deep-zoom viewer with heatmap and tile outlines, the slide verdict, the report, top tiles. */
export function SlideDetail({ job }: { job: JobDetail }) {
  const verdict = job.verdict;
  const slideVerdict = verdict?.slide ?? null;
  const [tiles, setTiles] = useState<TileScore[] | null>(null);
  const [focus, setFocus] = useState<Focus | null>(null);
  const hasGeojson = Boolean(slideVerdict?.geojson_uri);

  useEffect(() => {
    if (!hasGeojson) return;
    const controller = new AbortController();
    fetchTiles(job.job_id, controller.signal).then(setTiles, () => setTiles(null));
    return () => controller.abort();
  }, [job.job_id, hasGeojson]);

  const slide = job.slide;
  return (
    <>
      <section className="rounded-xl border border-slate-200 bg-white p-4 shadow-sm">
        <div className="mb-3 flex flex-wrap items-baseline gap-x-4 gap-y-1">
          <h3 className="text-xs font-semibold uppercase tracking-wide text-slate-500">Slide</h3>
          {slide && (
            <span className="text-xs text-slate-500">
              {slide.format || "whole-slide image"} · {slide.width.toLocaleString()} × {slide.height.toLocaleString()} px
              {slide.mpp ? ` · ${slide.mpp.toFixed(3)} µm/px${slide.mpp_assumed ? " (assumed)" : ""}` : ""}
              {slide.objective ? ` · ${slide.objective}×` : ""}
            </span>
          )}
          {slideVerdict?.heatmap_uri && (
            <a className="ml-auto text-xs text-teal-700 hover:underline" href={slideUrl(job.job_id, "heatmap.png")} target="_blank" rel="noreferrer">
              heatmap.png
            </a>
          )}
          {hasGeojson && (
            <a className="text-xs text-teal-700 hover:underline" href={slideUrl(job.job_id, "tiles.geojson")} download={`${job.job_id}.geojson`}>
              tiles.geojson (QuPath)
            </a>
          )}
        </div>
        <SlideViewer jobId={job.job_id} tiles={tiles} hasHeatmap={Boolean(slideVerdict?.heatmap_uri)} focus={focus} />
      </section>

      <div className="grid gap-5 lg:grid-cols-5">
        <section className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm lg:col-span-2" data-testid="slide-verdict">
          <h3 className="mb-3 text-xs font-semibold uppercase tracking-wide text-slate-500">Slide verdict</h3>
          {verdict && slideVerdict ? (
            <div className="space-y-3">
              <div className="flex flex-wrap items-center gap-4">
                <AnswerBadge answer={verdict.answer} />
                <ProbabilityBar value={verdict.p_yes} wide />
              </div>
              <dl className="grid grid-cols-2 gap-x-4 gap-y-1.5 text-sm">
                <dt className="text-slate-500">Tiles scored</dt>
                <dd className="tabular-nums">{slideVerdict.tiles_scored.toLocaleString()}</dd>
                <dt className="text-slate-500">Tiles positive</dt>
                <dd className="tabular-nums" data-testid="tiles-positive">
                  {slideVerdict.tiles_positive.toLocaleString()}
                </dd>
                <dt className="text-slate-500">Slide score</dt>
                <dd>
                  mean p(yes) of the top {slideVerdict.aggregation.top_k} tiles ({slideVerdict.aggregation.method})
                </dd>
                <dt className="text-slate-500">Model</dt>
                <dd className="[overflow-wrap:anywhere]">
                  {verdict.model_id} · prompt {verdict.prompt_version}
                </dd>
              </dl>
            </div>
          ) : job.error ? (
            <JobErrorBox error={job.error} state={job.state} />
          ) : (
            <div className="space-y-2 text-sm text-slate-600">
              <p>Scoring the slide… this page updates by itself.</p>
              {slide && <SlideProgress slide={slide} wide />}
            </div>
          )}
        </section>
        <section className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm lg:col-span-3">
          <h3 className="mb-3 text-xs font-semibold uppercase tracking-wide text-slate-500">Slide report</h3>
          {slideVerdict ? <Report report={slideVerdict.report} /> : <p className="text-sm text-slate-500">After the verdict.</p>}
        </section>
      </div>

      {slideVerdict && slideVerdict.top_tiles.length > 0 && (
        <section className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm">
          <h3 className="mb-3 text-xs font-semibold uppercase tracking-wide text-slate-500">
            Top tiles <span className="font-normal normal-case text-slate-400">· click one to zoom the viewer to it</span>
          </h3>
          <ol className="grid grid-cols-2 gap-3 sm:grid-cols-4 lg:grid-cols-8" data-testid="top-tiles">
            {slideVerdict.top_tiles.map((tile, rank) => (
              <li key={tile.index}>
                <button
                  data-testid="top-tile"
                  data-index={tile.index}
                  onClick={() => setFocus({ tile, seq: (focus?.seq ?? 0) + 1 })}
                  className={`group block w-full overflow-hidden rounded-lg border text-left ${
                    focus?.tile.index === tile.index ? "border-teal-600 ring-2 ring-teal-500" : "border-slate-200 hover:border-teal-400"
                  }`}
                >
                  <img src={topTileUrl(job.job_id, rank)} alt={`Tile ${tile.index}`} className="aspect-square w-full bg-slate-100 object-cover" />
                  <span className="flex items-center justify-between px-2 py-1 text-xs">
                    <span className="text-slate-500">#{rank + 1}</span>
                    <span className="font-semibold tabular-nums text-slate-800">{tile.p_yes.toFixed(3)}</span>
                  </span>
                </button>
              </li>
            ))}
          </ol>
        </section>
      )}
    </>
  );
}
