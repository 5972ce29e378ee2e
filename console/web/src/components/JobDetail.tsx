import { lazy, Suspense, useState } from "react";
import { fetchJob, previewUrl, type JobDetail as Job } from "../api";
import { formatBytes, formatMs, formatTime, splitName } from "../format";
import { usePolling } from "../usePolling";
import { AnswerBadge, JobErrorBox, ProbabilityBar, StateBadge } from "./Badges";

// The viewer (OpenSeadragon) is loaded only when a slide is opened: the list stays light.
const SlideDetail = lazy(() => import("./SlideDetail").then((m) => ({ default: m.SlideDetail })));

const POLL_MS = 1500;

function Field({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div className="grid grid-cols-3 gap-3 py-1.5 text-sm">
      <dt className="text-slate-500">{label}</dt>
      <dd className="col-span-2 text-slate-800 [overflow-wrap:anywhere]">{children}</dd>
    </div>
  );
}

/** Whether the job may still change: not finished, or a slide whose report is still being written. */
function changing(job: Job | null): boolean {
  if (job === null) return false;
  return (job.state !== "done" && job.state !== "failed") || job.verdict?.slide?.report.status === "pending";
}

/** One job: server-rendered preview, full verdict, object facts and history. Polls until terminal
 * (and, for a slide, until its report is written or has failed). */
export function JobDetail({ jobId, onBack }: { jobId: string; onBack: () => void }) {
  const { data: job, error } = usePolling<Job>(
    (signal) => fetchJob(jobId, signal),
    changing,
    POLL_MS,
    [jobId],
  );
  const [previewFailed, setPreviewFailed] = useState(false);

  if (error) return <p className="text-sm text-rose-700">Could not load the job: {error}</p>;
  if (!job) return <p className="text-sm text-slate-500">Loading…</p>;

  const verdict = job.verdict;
  const timings = verdict?.timings_ms;
  return (
    <div className="space-y-5" data-testid="job-detail">
      <div className="flex flex-wrap items-center gap-3">
        <button onClick={onBack} className="rounded-md border border-slate-300 bg-white px-3 py-1.5 text-sm hover:bg-slate-50">
          ← All jobs
        </button>
        <h2 className="min-w-0 truncate text-lg font-semibold text-slate-900" title={job.name}>
          {splitName(job.name).base}
        </h2>
        {job.kind === "slide" && (
          <span className="rounded bg-indigo-50 px-1.5 py-0.5 text-xs font-medium text-indigo-700 ring-1 ring-inset ring-indigo-200">
            whole slide
          </span>
        )}
        <StateBadge state={job.state} />
      </div>

      {job.kind === "slide" ? (
        <Suspense fallback={<p className="text-sm text-slate-500">Loading the viewer…</p>}>
          <SlideDetail job={job} />
        </Suspense>
      ) : (
      <div className="grid gap-5 lg:grid-cols-5">
        <section className="rounded-xl border border-slate-200 bg-white p-4 shadow-sm lg:col-span-2">
          <h3 className="mb-3 text-xs font-semibold uppercase tracking-wide text-slate-500">Preview</h3>
          {previewFailed ? (
            <div className="flex aspect-square items-center justify-center rounded-lg bg-slate-100 p-6 text-center text-sm text-slate-500">
              {job.error?.description ?? "No preview: the stored object cannot be shown."}
            </div>
          ) : (
            <img
              data-testid="preview"
              src={previewUrl(job.job_id)}
              alt={`Preview of ${splitName(job.name).base}`}
              onError={() => setPreviewFailed(true)}
              className="mx-auto w-full max-w-[512px] rounded-lg bg-slate-100 object-contain [image-rendering:auto]"
            />
          )}
          <p className="mt-2 text-xs text-slate-400">Downscaled preview rendered by the console; not the original file.</p>
        </section>

        <section className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm lg:col-span-3">
          <h3 className="mb-3 text-xs font-semibold uppercase tracking-wide text-slate-500">Verdict</h3>
          {verdict ? (
            <div className="space-y-4">
              <div className="flex flex-wrap items-center gap-4">
                <AnswerBadge answer={verdict.answer} />
                <ProbabilityBar value={verdict.p_yes} wide />
                <span className="text-xs text-slate-500">p(yes): model probability of colorectal cancer</span>
              </div>
              <p className="rounded-lg bg-slate-50 p-3 text-sm leading-relaxed text-slate-700" data-testid="explanation">
                {verdict.explanation || "No explanation was generated."}
              </p>
              <dl className="divide-y divide-slate-100">
                <Field label="Model">{verdict.model_id}</Field>
                <Field label="Revision">{verdict.model_revision || "—"}</Field>
                <Field label="Quantization">{verdict.quantization}</Field>
                <Field label="Prompt version">{verdict.prompt_version}</Field>
                <Field label="Timings">
                  <span className="tabular-nums">
                    download {formatMs(timings?.download)} · decode {formatMs(timings?.decode)} · queue{" "}
                    {formatMs(timings?.queue)} · inference {formatMs(timings?.inference)} ·{" "}
                    <strong>total {formatMs(timings?.total)}</strong>
                  </span>
                </Field>
              </dl>
            </div>
          ) : job.error ? (
            <JobErrorBox error={job.error} state={job.state} />
          ) : (
            <p className="text-sm text-slate-500">Waiting for the model… this page updates by itself.</p>
          )}
        </section>
      </div>
      )}

      <div className="grid gap-5 lg:grid-cols-5">
        <section className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm lg:col-span-2">
          <h3 className="mb-2 text-xs font-semibold uppercase tracking-wide text-slate-500">Object</h3>
          <dl className="divide-y divide-slate-100">
            <Field label="Name">{job.name}</Field>
            <Field label="Bucket">{job.bucket}</Field>
            <Field label="Generation">{job.generation}</Field>
            <Field label="Size">{formatBytes(job.size_bytes)}</Field>
            <Field label="Content type">{job.content_type || "—"}</Field>
            <Field label="Attempts">{job.attempts}</Field>
            <Field label="Job id">
              <span className="font-mono text-xs">{job.job_id}</span>
            </Field>
          </dl>
        </section>
        <section className="rounded-xl border border-slate-200 bg-white p-5 shadow-sm lg:col-span-3">
          <h3 className="mb-3 text-xs font-semibold uppercase tracking-wide text-slate-500">History</h3>
          <ol className="relative ml-2 border-l border-slate-200" data-testid="history">
            {job.history.map((entry, i) => (
              <li key={`${entry.at}-${i}`} className="mb-3 ml-4">
                <span className="absolute -left-1.5 mt-1.5 h-3 w-3 rounded-full border-2 border-white bg-teal-500" />
                <p className="text-sm">
                  <span className="font-medium text-slate-900">{entry.event}</span>
                  {entry.detail && <span className="ml-2 text-slate-500">{entry.detail}</span>}
                </p>
                <time className="text-xs text-slate-400">{formatTime(entry.at)}</time>
              </li>
            ))}
          </ol>
        </section>
      </div>
    </div>
  );
}
