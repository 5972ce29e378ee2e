// Types and calls of the console backend (console/backend). Everything is same-origin.

export type JobState = "queued" | "running" | "done" | "failed";
export type Answer = "yes" | "no" | "indeterminate";
export type JobKind = "image" | "slide";

export interface Timings {
  download: number;
  decode: number;
  queue: number;
  inference: number;
  total: number;
}

/** A slide job's list-row extras: progress while it runs, counts and report status when done. */
export interface SlideSummary {
  stage: string;
  tiles_total: number;
  tiles_scored: number;
  shards_total: number;
  shards_done: number;
  width: number;
  height: number;
  format: string;
  tiles_positive: number | null;
  report_status: string | null;
}

export interface JobSummary {
  job_id: string;
  kind: JobKind;
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
  slide: SlideSummary | null;
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
  slide: SlideVerdict | null;
}

/** One scored tile: its level-0 square and p(yes). */
export interface TileScore {
  index: number;
  x: number;
  y: number;
  w: number;
  h: number;
  p_yes: number;
}

export interface SlideReport {
  status: "off" | "pending" | "done" | "failed" | string;
  text: string;
  model_id: string;
  model_revision?: string;
  prompt_version: string;
  patches: number;
  error: string;
  inference_ms?: number;
}

export interface SlideVerdict {
  aggregation: { method: string; top_k: number };
  tiles_scored: number;
  tiles_positive: number;
  top_tiles: TileScore[];
  heatmap_uri: string;
  geojson_uri: string;
  thumbnail_uri: string;
  report: SlideReport;
}

/** A slide job's geometry and progress (`job.slide`). */
export interface SlideInfo {
  stage: string;
  format: string;
  vendor: string;
  width: number;
  height: number;
  mpp: number | null;
  mpp_assumed: boolean;
  objective: number | null;
  levels: number;
  tile_px: number;
  tile_mpp: number;
  tiles_total: number;
  shards_total: number;
  shards_done: number;
  tiles_scored: number;
}

export interface JobDetail {
  job_id: string;
  kind: JobKind;
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
  slide: SlideInfo | null;
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

// ---- slides ---------------------------------------------------------------------------------

/** Where a slide job's Deep Zoom descriptor, artifacts and top-tile thumbnails are served. */
export function slideUrl(jobId: string, path: "slide.dzi" | "heatmap.png" | "tiles.geojson" | "thumbnail.png"): string {
  return `/api/jobs/${encodeURIComponent(jobId)}/${path}`;
}

export function topTileUrl(jobId: string, rank: number): string {
  return `/api/jobs/${encodeURIComponent(jobId)}/top-tiles/${rank}.jpeg`;
}

/** The heatmap's slide part, and the level-0 extent it covers (from the PNG's own scale). */
export interface HeatmapOverlay {
  objectUrl: string;
  width0: number;
  height0: number;
}

export async function fetchHeatmapOverlay(jobId: string, signal?: AbortSignal): Promise<HeatmapOverlay> {
  const response = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/heatmap-overlay.png`, { signal });
  if (!response.ok) throw new Error(`No heatmap (${response.status}).`);
  return {
    objectUrl: URL.createObjectURL(await response.blob()),
    width0: Number(response.headers.get("X-Overlay-Width0")),
    height0: Number(response.headers.get("X-Overlay-Height0")),
  };
}

/** A GeoJSON tile feature as the slide service writes it (QuPath's form). */
export interface TileFeature {
  geometry: { type: "Polygon"; coordinates: number[][][] };
  properties: { name: string; measurements: { p_yes: number; tile_index: number } };
}

export async function fetchTiles(jobId: string, signal?: AbortSignal): Promise<TileScore[]> {
  const body = await getJson<{ features: TileFeature[] }>(slideUrl(jobId, "tiles.geojson"), signal);
  return body.features.map((feature) => {
    const ring = feature.geometry.coordinates[0];
    const xs = ring.map((p) => p[0]);
    const ys = ring.map((p) => p[1]);
    const x = Math.min(...xs);
    const y = Math.min(...ys);
    return {
      index: feature.properties.measurements.tile_index,
      x,
      y,
      w: Math.max(...xs) - x,
      h: Math.max(...ys) - y,
      p_yes: feature.properties.measurements.p_yes,
    };
  });
}

/** Why a slide cannot be shown (the backend's coded error), in words. */
export async function slideProblem(jobId: string): Promise<string | null> {
  const response = await fetch(slideUrl(jobId, "slide.dzi"));
  if (response.ok) return null;
  try {
    const body = (await response.json()) as { detail: string | { description: string; message: string } };
    return typeof body.detail === "string" ? body.detail : `${body.detail.description} ${body.detail.message}`;
  } catch {
    return `The slide cannot be shown (${response.status}).`;
  }
}

// ---- resumable uploads (large files, whole slides) ------------------------------------------------

export interface ResumableInfo {
  chunk_bytes: number;
  max_slide_bytes: number;
  max_image_bytes: number;
  slide_suffixes: string[];
}

export interface ResumableSession {
  file_name: string;
  bucket: string;
  object_name: string;
  session_url: string;
  size: number;
  chunk_bytes: number;
}

export function fetchResumableInfo(): Promise<ResumableInfo> {
  return getJson<ResumableInfo>("/api/uploads/resumable");
}

/** Ordinary images keep the single signed PUT; slide formats and anything over one chunk go resumable. */
export function wantsResumable(file: File, info: ResumableInfo): boolean {
  const dot = file.name.lastIndexOf(".");
  const suffix = dot < 0 ? "" : file.name.slice(dot).toLowerCase();
  const slideOnly = info.slide_suffixes.includes(suffix) && suffix !== ".tif" && suffix !== ".tiff";
  return file.size > 0 && (slideOnly || file.size > info.chunk_bytes);
}

export async function startResumable(file: File, prefix: string): Promise<ResumableSession> {
  const response = await fetch("/api/uploads/resumable", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: file.name, content_type: file.type, size: file.size, prefix }),
  });
  if (!response.ok) {
    let detail = `Could not start the upload (${response.status}).`;
    try {
      detail = ((await response.json()) as { detail: string }).detail ?? detail;
    } catch {
      /* keep the status line */
    }
    throw new Error(detail);
  }
  return (await response.json()) as ResumableSession;
}

interface ChunkAnswer {
  status: number;
  persisted: number | null; // bytes the session holds, when it said (308 + Range)
}

function sendChunk(
  url: string,
  body: Blob | null,
  contentRange: string,
  onProgress: (loaded: number) => void,
): Promise<ChunkAnswer> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    xhr.setRequestHeader("Content-Range", contentRange);
    xhr.upload.onprogress = (event) => onProgress(event.loaded);
    xhr.onload = () => {
      const range = /^bytes=0-(\d+)$/.exec(xhr.getResponseHeader("Range") ?? "");
      resolve({ status: xhr.status, persisted: range ? Number(range[1]) + 1 : xhr.status === 308 ? 0 : null });
    };
    xhr.onerror = () => reject(new Error("Network error during upload."));
    xhr.send(body);
  });
}

const sleep = (ms: number) => new Promise((resolve) => window.setTimeout(resolve, ms));

/**
 * Send `file` to a resumable session in chunks, reporting overall progress (0..1). After a network
 * error or a refused chunk it asks the session where it stands and goes on from there (up to
 * `retries` times in a row, with a growing pause).
 */
export async function uploadResumable(
  session: ResumableSession,
  file: File,
  onProgress: (fraction: number) => void,
  retries = 5,
): Promise<void> {
  const total = file.size;
  let offset = 0;
  let failures = 0;
  while (offset < total) {
    const end = Math.min(offset + session.chunk_bytes, total);
    let answer: ChunkAnswer | null = null;
    try {
      answer = await sendChunk(session.session_url, file.slice(offset, end), `bytes ${offset}-${end - 1}/${total}`, (loaded) =>
        onProgress((offset + loaded) / total),
      );
    } catch {
      answer = null;
    }
    if (answer && (answer.status === 200 || answer.status === 201)) {
      onProgress(1);
      return;
    }
    if (answer && answer.status === 308) {
      offset = answer.persisted ?? end;
      failures = 0;
      onProgress(offset / total);
      continue;
    }
    if (answer && answer.status >= 400 && answer.status < 500 && answer.status !== 408 && answer.status !== 409 && answer.status !== 429) {
      throw new Error(`Upload refused (${answer.status}).`);
    }
    failures += 1;
    if (failures > retries) throw new Error("The upload kept failing; try again later.");
    await sleep(500 * 2 ** failures);
    try {
      const status = await sendChunk(session.session_url, null, `bytes */${total}`, () => undefined);
      if (status.status === 200 || status.status === 201) {
        onProgress(1);
        return;
      }
      if (status.status === 308) offset = status.persisted ?? offset;
    } catch {
      /* still offline: the next round tries again */
    }
  }
}
