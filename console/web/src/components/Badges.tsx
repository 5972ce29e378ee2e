import type { Answer, JobDetail, JobState } from "../api";

const STATE_STYLES: Record<JobState, string> = {
  queued: "bg-slate-100 text-slate-700 ring-slate-300",
  running: "bg-sky-50 text-sky-700 ring-sky-300",
  done: "bg-emerald-50 text-emerald-700 ring-emerald-300",
  failed: "bg-rose-50 text-rose-700 ring-rose-300",
};

const ANSWER_STYLES: Record<Answer, string> = {
  yes: "bg-rose-600 text-white ring-rose-600",
  no: "bg-teal-600 text-white ring-teal-600",
  indeterminate: "bg-amber-100 text-amber-800 ring-amber-300",
};

const ANSWER_LABELS: Record<Answer, string> = {
  yes: "Suspicious",
  no: "Not suspicious",
  indeterminate: "Indeterminate",
};

export function StateBadge({ state }: { state: JobState }) {
  return (
    <span
      data-testid="state"
      className={`inline-flex items-center gap-1.5 rounded-full px-2 py-0.5 text-xs font-medium ring-1 ring-inset ${STATE_STYLES[state]}`}
    >
      {state === "running" && <span className="h-1.5 w-1.5 animate-pulse rounded-full bg-sky-500" />}
      {state}
    </span>
  );
}

export function AnswerBadge({ answer }: { answer: Answer | null }) {
  if (!answer) return <span className="text-xs text-slate-400">—</span>;
  return (
    <span
      data-testid="answer"
      title={`Model answer: ${answer}`}
      className={`inline-flex whitespace-nowrap rounded-md px-2 py-0.5 text-xs font-semibold ring-1 ring-inset ${ANSWER_STYLES[answer]}`}
    >
      {ANSWER_LABELS[answer]}
    </span>
  );
}

/** p(yes) as a bar: the model's probability that the tile shows colorectal cancer. */
export function ProbabilityBar({ value, wide = false }: { value: number | null; wide?: boolean }) {
  if (value == null) return <span className="text-xs text-slate-400">—</span>;
  const percent = Math.round(value * 100);
  const color = value >= 0.6 ? "bg-rose-500" : value <= 0.4 ? "bg-teal-500" : "bg-amber-400";
  return (
    <div className="flex items-center gap-2" title={`p(yes) = ${value.toFixed(3)}`}>
      <div className={`h-2 overflow-hidden rounded-full bg-slate-200 ${wide ? "w-48" : "w-20"}`}>
        <div className={`h-full rounded-full ${color}`} style={{ width: `${percent}%` }} />
      </div>
      <span className="w-9 text-right text-xs tabular-nums text-slate-600">{percent}%</span>
    </div>
  );
}

/** A failed (or retrying) job's error: plain words, the technical message, the code. */
export function JobErrorBox({ error, state }: { error: NonNullable<JobDetail["error"]>; state: JobState }) {
  return (
    <div className="rounded-lg border border-rose-200 bg-rose-50 p-4 text-sm" data-testid="job-error">
      <p className="font-semibold text-rose-800">{error.description}</p>
      <p className="mt-1 text-rose-700">{error.message}</p>
      <p className="mt-2 font-mono text-xs text-rose-600">
        code: {error.code}
        {error.retryable && state !== "failed" ? " · will be retried" : ""}
      </p>
    </div>
  );
}
