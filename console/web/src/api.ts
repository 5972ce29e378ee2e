// Types and calls of the console backend (console/backend). Everything is same-origin.

export type JobState = "queued" | "running" | "done" | "failed";
export type Answer = "yes" | "no" | "indeterminate";

export interface Timings {
  download: number;
  decode: number;
  queue: number;
  inference: number;
  total: number;
}

export interface JobSummary {
  job_id: string;
  name: string;
  bucket: string;
  generation: number;
  state: JobState;
  attempts: number;
  content_type: string;
  size_bytes: number;
  created_at: string | null;
  finished_at: string | null;
  updated_at: string | null;
  answer: Answer | null;
  p_yes: number | null;
  explanation: string;
  model_id: string;
  model_revision: string;
  quantization: string;
  prompt_version: string;
  timings_ms: Timings | null;
  error_code: string | null;
  error_description: string | null;
  error_message: string | null;
}

export interface JobPage {
  items: JobSummary[];
  offset: number;
  limit: number;
  next_offset: number | null;
  scanned: number;
  scan_limited: boolean;
  counts: Record<JobState, number> | null;
}

export interface Verdict {
  answer: Answer;
  p_yes: number | null;
  explanation: string;
  model_id: string;
  model_revision: string;
  quantization: string;
  prompt_version: string;
  timings_ms: Timings;
}

export interface JobDetail {
  job_id: string;
  bucket: string;
  name: string;
  generation: number;
  content_type: string;
  size_bytes: number;
  crc32c: string;
  state: JobState;
  attempts: number;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string | null;
  error: { code: string; message: string; retryable: boolean; description: string } | null;
  verdict: Verdict | null;
  history: { at: string; event: string; detail: string }[];
}

export interface ConsoleConfig {
  user: string;
  project: string;
  bucket: string;
  local: boolean;
  upload_prefix: string;
  max_image_bytes: number;
  preview_max_px: number;
  error_descriptions: Record<string, string>;
}

export interface UploadTicket {
  file_name: string;
  bucket: string;
  object_name: string;
  method: string;
  url: string | null;
  headers: Record<string, string>;
  expires_at: string | null;
  error: string | null;
}

export interface JobFilters {
  state: JobState | "";
  answer: Answer | "";
  q: string;
  offset: number;
  limit: number;
}

async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const response = await fetch(url, { signal, headers: { Accept: "application/json" } });
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  return (await response.json()) as T;
}

export function fetchConfig(): Promise<ConsoleConfig> {
  return getJson<ConsoleConfig>("/api/config");
}

export function fetchJobs(filters: JobFilters, signal?: AbortSignal): Promise<JobPage> {
  const params = new URLSearchParams();
  if (filters.state) params.set("state", filters.state);
  if (filters.answer) params.set("answer", filters.answer);
  if (filters.q.trim()) params.set("q", filters.q.trim());
  params.set("offset", String(filters.offset));
  params.set("limit", String(filters.limit));
  return getJson<JobPage>(`/api/jobs?${params}`, signal);
}

export function fetchJob(jobId: string, signal?: AbortSignal): Promise<JobDetail> {
  return getJson<JobDetail>(`/api/jobs/${encodeURIComponent(jobId)}`, signal);
}

export function previewUrl(jobId: string): string {
  return `/api/jobs/${encodeURIComponent(jobId)}/preview.png`;
}

export async function requestUploads(files: File[], prefix: string): Promise<UploadTicket[]> {
  const response = await fetch("/api/uploads", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      prefix,
      files: files.map((f) => ({ name: f.name, content_type: f.type, size: f.size })),
    }),
  });
  if (!response.ok) {
    throw new Error(`Could not get upload URLs (${response.status}).`);
  }
  const body = (await response.json()) as { uploads: UploadTicket[] };
  return body.uploads;
}

/** PUT one file to its signed URL, reporting progress (0..1). XHR, because fetch has no upload progress. */
export function putFile(ticket: UploadTicket, file: File, onProgress: (fraction: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!ticket.url) {
      reject(new Error(ticket.error ?? "No upload URL."));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open(ticket.method || "PUT", ticket.url);
    for (const [name, value] of Object.entries(ticket.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(new Error(`Upload refused (${xhr.status}).`));
      }
    };
    xhr.onerror = () => reject(new Error("Network error during upload."));
    xhr.send(file);
  });
}
