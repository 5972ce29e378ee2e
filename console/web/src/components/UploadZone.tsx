import { useCallback, useRef, useState } from "react";
import {
  fetchResumableInfo,
  putFile,
  requestUploads,
  startResumable,
  uploadResumable,
  wantsResumable,
  type ResumableInfo,
} from "../api";
import { formatBytes, splitName } from "../format";

interface UploadItem {
  key: string;
  file: File;
  objectName: string;
  progress: number;
  status: "waiting" | "uploading" | "uploaded" | "failed";
  resumable?: boolean;
  error?: string;
}

const PARALLEL_UPLOADS = 4;

/**
 * Drag-and-drop (or browse) many images and slides; each goes straight to the inbox bucket with its
 * own progress bar. Images go in one signed PUT; whole slides and anything larger than one chunk go
 * in resumable chunks (an interrupted upload goes on from where it stopped).
 */
export function UploadZone({ onUploaded }: { onUploaded: () => void }) {
  const [items, setItems] = useState<UploadItem[]>([]);
  const [dragging, setDragging] = useState(false);
  const [prefix, setPrefix] = useState("");
  const [error, setError] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);
  const resumableInfo = useRef<Promise<ResumableInfo> | null>(null);

  const update = (key: string, patch: Partial<UploadItem>) =>
    setItems((current) => current.map((item) => (item.key === key ? { ...item, ...patch } : item)));

  const upload = useCallback(
    async (all: File[]) => {
      if (all.length === 0) return;
      setError(null);
      let info: ResumableInfo;
      try {
        resumableInfo.current ??= fetchResumableInfo();
        info = await resumableInfo.current;
      } catch (exc) {
        resumableInfo.current = null;
        setError((exc as Error).message);
        return;
      }
      const large = all.filter((f) => wantsResumable(f, info));
      const files = all.filter((f) => !wantsResumable(f, info));
      const sessions: UploadItem[] = large.map((file, i) => ({
        key: `resumable#${file.name}#${Date.now()}#${i}`,
        file,
        objectName: file.name,
        progress: 0,
        status: "waiting",
        resumable: true,
      }));
      setItems((current) => [...sessions, ...current]);
      const sendLarge = async () => {
        // One large file at a time: each already keeps the connection busy.
        for (const item of sessions) {
          update(item.key, { status: "uploading" });
          try {
            const session = await startResumable(item.file, prefix);
            update(item.key, { objectName: session.object_name });
            await uploadResumable(session, item.file, (progress) => update(item.key, { progress }));
            update(item.key, { status: "uploaded", progress: 1 });
            onUploaded();
          } catch (exc) {
            update(item.key, { status: "failed", error: (exc as Error).message });
          }
        }
      };
      const largeDone = sendLarge();
      if (files.length === 0) {
        await largeDone;
        return;
      }
      let tickets;
      try {
        tickets = await requestUploads(files, prefix);
      } catch (exc) {
        setError((exc as Error).message);
        await largeDone;
        return;
      }
      const batch: UploadItem[] = tickets.map((ticket, i) => ({
        key: `${ticket.object_name}#${Date.now()}#${i}`,
        file: files[i],
        objectName: ticket.object_name,
        progress: 0,
        status: ticket.url ? "waiting" : "failed",
        error: ticket.error ?? undefined,
      }));
      setItems((current) => [...batch, ...current]);
      const queue = batch.map((item, i) => ({ item, ticket: tickets[i] })).filter(({ ticket }) => ticket.url);
      const worker = async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          const { item, ticket } = next;
          update(item.key, { status: "uploading" });
          try {
            await putFile(ticket, item.file, (progress) => update(item.key, { progress }));
            update(item.key, { status: "uploaded", progress: 1 });
            onUploaded();
          } catch (exc) {
            update(item.key, { status: "failed", error: (exc as Error).message });
          }
        }
      };
      await Promise.all([largeDone, ...Array.from({ length: Math.min(PARALLEL_UPLOADS, queue.length) }, worker)]);
    },
    [prefix, onUploaded],
  );

  const onDrop = (event: React.DragEvent) => {
    event.preventDefault();
    setDragging(false);
    void upload(Array.from(event.dataTransfer.files));
  };

  return (
    <section className="rounded-xl border border-slate-200 bg-white shadow-sm">
      <div className="flex flex-wrap items-center justify-between gap-3 border-b border-slate-100 px-5 py-3">
        <h2 className="text-sm font-semibold text-slate-900">Upload slides</h2>
        <label className="flex items-center gap-2 text-xs text-slate-500">
          Folder (optional)
          <input
            value={prefix}
            onChange={(e) => setPrefix(e.target.value)}
            placeholder="e.g. case-2031"
            className="w-44 rounded-md border border-slate-300 px-2 py-1 text-sm text-slate-800 focus:border-teal-500 focus:outline-none focus:ring-1 focus:ring-teal-500"
          />
        </label>
      </div>
      <div className="p-5">
        <div
          data-testid="drop-zone"
          role="button"
          tabIndex={0}
          onClick={() => input.current?.click()}
          onKeyDown={(e) => (e.key === "Enter" || e.key === " ") && input.current?.click()}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
          className={`flex cursor-pointer flex-col items-center justify-center rounded-lg border-2 border-dashed px-6 py-8 text-center transition ${
            dragging ? "border-teal-500 bg-teal-50" : "border-slate-300 hover:border-teal-400 hover:bg-slate-50"
          }`}
        >
          <svg className="mb-2 h-8 w-8 text-slate-400" fill="none" viewBox="0 0 24 24" stroke="currentColor" aria-hidden="true">
            <path strokeLinecap="round" strokeLinejoin="round" strokeWidth={1.5} d="M12 16V4m0 0l-4 4m4-4l4 4M4 16v2a2 2 0 002 2h12a2 2 0 002-2v-2" />
          </svg>
          <p className="text-sm text-slate-700">
            <span className="font-semibold text-teal-700">Choose images</span> or drag them here
          </p>
          <p className="mt-1 text-xs text-slate-500">
            PNG, JPEG, TIFF or WebP tiles · whole slides (SVS, NDPI, tiled TIFF, SCN, BIF) · many at once
          </p>
          <input
            ref={input}
            data-testid="file-input"
            type="file"
            multiple
            accept="image/png,image/jpeg,image/tiff,image/webp,.tif,.tiff,.svs,.ndpi,.scn,.bif,.svslide"
            className="hidden"
            onChange={(e) => {
              void upload(Array.from(e.target.files ?? []));
              e.target.value = "";
            }}
          />
        </div>
        {error && <p className="mt-3 text-sm text-rose-700">{error}</p>}
        {items.length > 0 && (
          <ul className="mt-4 divide-y divide-slate-100" data-testid="upload-list">
            {items.slice(0, 12).map((item) => (
              <li key={item.key} className="flex items-center gap-3 py-2 text-sm" data-testid="upload-item" data-progress={item.progress.toFixed(3)}>
                <span className="min-w-0 flex-1 truncate" title={item.objectName}>
                  {splitName(item.objectName).base}
                  <span className="ml-2 text-xs text-slate-400">{formatBytes(item.file.size)}</span>
                  {item.resumable && <span className="ml-2 text-xs text-slate-400">· resumable</span>}
                </span>
                <div className="h-1.5 w-40 overflow-hidden rounded-full bg-slate-200">
                  <div
                    className={`h-full rounded-full transition-all ${item.status === "failed" ? "bg-rose-500" : "bg-teal-500"}`}
                    style={{ width: `${Math.round(item.progress * 100)}%` }}
                  />
                </div>
                <span
                  className={`w-52 truncate whitespace-nowrap text-right text-xs ${item.status === "failed" ? "text-rose-700" : "text-slate-500"}`}
                  data-testid="upload-status"
                  title={item.error}
                >
                  {item.status === "failed"
                    ? item.error ?? "failed"
                    : item.status === "uploaded"
                      ? "Uploaded · queued for screening"
                      : item.status === "uploading"
                        ? `${Math.round(item.progress * 100)}%`
                        : "waiting"}
                </span>
              </li>
            ))}
          </ul>
        )}
      </div>
    </section>
  );
}
