import type { SlideInfo, SlideSummary } from "../api";

const STAGES: Record<string, string> = {
  tiling: "tiling",
  scoring: "scoring",
  finalizing: "finalizing",
  reporting: "writing the report",
  done: "done",
};

/** A running slide's progress: tiles scored of the total (a bar), and its stage. */
export function SlideProgress({ slide, wide = false }: { slide: SlideInfo | SlideSummary; wide?: boolean }) {
  const total = slide.tiles_total;
  const fraction = total > 0 ? Math.min(1, slide.tiles_scored / total) : 0;
  return (
    <div className="space-y-1" data-testid="slide-progress" data-scored={slide.tiles_scored} data-total={total}>
      <div className={`h-1.5 overflow-hidden rounded-full bg-slate-200 ${wide ? "w-64" : "w-32"}`}>
        <div className="h-full rounded-full bg-sky-500 transition-all" style={{ width: `${Math.round(fraction * 100)}%` }} />
      </div>
      <p className="text-xs tabular-nums text-slate-500">
        {total > 0 ? `${slide.tiles_scored.toLocaleString()} / ${total.toLocaleString()} tiles` : "finding tissue…"} ·{" "}
        {STAGES[slide.stage] ?? slide.stage}
        {slide.shards_total > 0 && ` · shards ${slide.shards_done}/${slide.shards_total}`}
      </p>
    </div>
  );
}
