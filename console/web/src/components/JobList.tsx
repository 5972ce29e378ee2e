import { useState } from "react";
import { fetchJobs, type JobFilters, type JobPage, type JobState } from "../api";
import { formatMs, relativeTime, splitName } from "../format";
import { usePolling } from "../usePolling";
import { AnswerBadge, ProbabilityBar, StateBadge } from "./Badges";
import { SlideProgress } from "./SlideProgress";

const REPORT_STATUS: Record<string, string> = {
  done: "report ready",
  pending: "report pending",
  failed: "report failed",
  off: "no report",
};

const POLL_MS = 1500;
/** Upload to verdict, for a slide (its verdict has no per-stage timings of one inference). */
function elapsedMs(from: string | null, to: string | null): number | null {
  return from && to ? new Date(to).getTime() - new Date(from).getTime() : null;
}

const STATES: JobState[] = ["queued", "running", "done", "failed"];

/** The live job list: polled every 1.5 s, filtered by state and answer, searched by object name. */
export function JobList({ refreshKey, onOpen }: { refreshKey: number; onOpen: (jobId: string) => void }) {
  const [filters, setFilters] = useState<JobFilters>({ state: "", answer: "", q: "", offset: 0, limit: 25 });
  // Keeps polling after a failed fetch: the list recovers by itself when the backend does.
  const { data: page, error } = usePolling<JobPage>(
    (signal) => fetchJobs(filters, signal),
    () => true,
    POLL_MS,
    [filters, refreshKey],
  );

  const set = (patch: Partial<JobFilters>) => setFilters((f) => ({ ...f, offset: 0, ...patch }));
  const counts = page?.counts;

  return (
    <section className="rounded-xl border border-slate-200 bg-white shadow-sm">
      <div className="flex flex-wrap items-center gap-3 border-b border-slate-100 px-5 py-3">
        <h2 className="mr-auto text-sm font-semibold text-slate-900">
          Jobs
          {counts && (
            <span className="ml-3 text-xs font-normal text-slate-500">
              {STATES.map((s) => `${counts[s]} ${s}`).join(" · ")}
            </span>
          )}
        </h2>
        <input
          type="search"
          data-testid="search"
          value={filters.q}
          onChange={(e) => set({ q: e.target.value })}
          placeholder="Search by file name…"
          className="w-56 rounded-md border border-slate-300 px-2.5 py-1.5 text-sm focus:border-teal-500 focus:outline-none focus:ring-1 focus:ring-teal-500"
        />
        <select
          aria-label="State"
          data-testid="filter-state"
          value={filters.state}
          onChange={(e) => set({ state: e.target.value as JobFilters["state"] })}
          className="rounded-md border border-slate-300 bg-white px-2 py-1.5 text-sm"
        >
          <option value="">All states</option>
          {STATES.map((s) => (
            <option key={s} value={s}>
              {s[0].toUpperCase() + s.slice(1)}
            </option>
          ))}
        </select>
        <select
          aria-label="Answer"
          data-testid="filter-answer"
          value={filters.answer}
          onChange={(e) => set({ answer: e.target.value as JobFilters["answer"] })}
          className="rounded-md border border-slate-300 bg-white px-2 py-1.5 text-sm"
        >
          <option value="">All answers</option>
          <option value="yes">Suspicious (yes)</option>
          <option value="no">Not suspicious (no)</option>
          <option value="indeterminate">Indeterminate</option>
        </select>
      </div>
      {error && <p className="px-5 py-2 text-sm text-rose-700">Could not load jobs: {error}</p>}
      <div className="overflow-x-auto">
        <table className="min-w-full text-left text-sm" data-testid="job-table">
          <thead className="bg-slate-50 text-xs uppercase tracking-wide text-slate-500">
            <tr>
              <th className="px-5 py-2 font-medium">File</th>
              <th className="px-3 py-2 font-medium">State</th>
              <th className="px-3 py-2 font-medium">Answer</th>
              <th className="px-3 py-2 font-medium">p(yes)</th>
              <th className="px-3 py-2 font-medium">Explanation</th>
              <th className="px-3 py-2 font-medium">Time</th>
              <th className="px-3 py-2 font-medium">Model · prompt</th>
              <th className="px-5 py-2 font-medium">Uploaded</th>
            </tr>
          </thead>
          <tbody className="divide-y divide-slate-100">
            {page?.items.map((job) => {
              const { base, folder } = splitName(job.name);
              return (
                <tr
                  key={job.job_id}
                  data-testid="job-row"
                  data-job-id={job.job_id}
                  data-name={job.name}
                  data-state={job.state}
                  data-kind={job.kind}
                  onClick={() => onOpen(job.job_id)}
                  className="cursor-pointer align-top hover:bg-slate-50"
                >
                  <td className="max-w-56 px-5 py-3">
                    <div className="flex items-center gap-1.5">
                      {job.kind === "slide" && (
                        <span className="flex-none rounded bg-indigo-50 px-1 text-[10px] font-semibold uppercase text-indigo-700 ring-1 ring-inset ring-indigo-200">
                          slide
                        </span>
                      )}
                      <span className="truncate font-medium text-slate-900" title={job.name}>
                        {base}
                      </span>
                    </div>
                    <div className="truncate text-xs text-slate-400" title={folder}>
                      {folder || "—"}
                    </div>
                  </td>
                  <td className="px-3 py-3">
                    <StateBadge state={job.state} />
                    {job.slide && !job.answer && job.state !== "failed" && (
                      <div className="mt-1.5">
                        <SlideProgress slide={job.slide} />
                      </div>
                    )}
                  </td>
                  <td className="px-3 py-3">
                    <AnswerBadge answer={job.answer} />
                  </td>
                  <td className="px-3 py-3">
                    <ProbabilityBar value={job.p_yes} />
                  </td>
                  <td className="max-w-sm px-3 py-3">
                    {job.state === "failed" ? (
                      <span className="text-rose-700" data-testid="error-description">
                        {job.error_description ?? "Failed."}
                      </span>
                    ) : job.slide && job.slide.tiles_positive != null ? (
                      <span className="text-slate-600" data-testid="slide-summary">
                        <strong className="tabular-nums">{job.slide.tiles_positive.toLocaleString()}</strong> of{" "}
                        {job.slide.tiles_scored.toLocaleString()} tiles positive ·{" "}
                        <span data-testid="report-status">{REPORT_STATUS[job.slide.report_status ?? ""] ?? job.slide.report_status}</span>
                      </span>
                    ) : (
                      <span className="line-clamp-2 text-slate-600 [overflow-wrap:anywhere]">{job.explanation || "—"}</span>
                    )}
                  </td>
                  <td className="whitespace-nowrap px-3 py-3 tabular-nums text-slate-600">
                    {job.kind === "slide" ? formatMs(elapsedMs(job.created_at, job.finished_at)) : formatMs(job.timings_ms?.total)}
                  </td>
                  <td className="px-3 py-3 text-xs text-slate-500">
                    {job.model_id ? (
                      <>
                        <div className="max-w-40 truncate" title={job.model_id}>
                          {job.model_id}
                        </div>
                        <div>prompt {job.prompt_version}</div>
                      </>
                    ) : (
                      "—"
                    )}
                  </td>
                  <td className="whitespace-nowrap px-5 py-3 text-xs text-slate-500" title={job.created_at ?? ""}>
                    {relativeTime(job.created_at)}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {page && page.items.length === 0 && (
          <p className="px-5 py-10 text-center text-sm text-slate-500">
            {filters.q || filters.state || filters.answer ? "No job matches these filters." : "No jobs yet: upload an image above."}
          </p>
        )}
      </div>
      <div className="flex items-center justify-between border-t border-slate-100 px-5 py-2.5 text-xs text-slate-500">
        <span>
          {page ? `Showing ${page.items.length ? page.offset + 1 : 0}–${page.offset + page.items.length}` : "Loading…"}
          {page?.scan_limited && " · search covered the newest jobs only"}
        </span>
        <div className="flex gap-2">
          <button
            disabled={!page || page.offset === 0}
            onClick={() => setFilters((f) => ({ ...f, offset: Math.max(0, f.offset - f.limit) }))}
            className="rounded-md border border-slate-300 px-2.5 py-1 disabled:opacity-40"
          >
            Previous
          </button>
          <button
            disabled={!page || page.next_offset == null}
            onClick={() => setFilters((f) => ({ ...f, offset: page?.next_offset ?? f.offset }))}
            className="rounded-md border border-slate-300 px-2.5 py-1 disabled:opacity-40"
          >
            Next
          </button>
        </div>
      </div>
    </section>
  );
}
