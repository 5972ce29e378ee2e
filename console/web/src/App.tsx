import { useCallback, useEffect, useState } from "react";
import { fetchConfig, type ConsoleConfig } from "./api";
import { ScreeningBanner } from "./components/Banner";
import { JobDetail } from "./components/JobDetail";
import { JobList } from "./components/JobList";
import { UploadZone } from "./components/UploadZone";

/** The job id in a `/jobs/<id>` path, or null on the list page. */
function jobIdFromPath(path: string): string | null {
  const match = /^\/jobs\/([A-Za-z0-9_-]+)\/?$/.exec(path);
  return match ? match[1] : null;
}

export default function App() {
  const [jobId, setJobId] = useState<string | null>(() => jobIdFromPath(window.location.pathname));
  const [config, setConfig] = useState<ConsoleConfig | null>(null);
  const [refreshKey, setRefreshKey] = useState(0);

  useEffect(() => {
    fetchConfig().then(setConfig, () => setConfig(null));
    const onPop = () => setJobId(jobIdFromPath(window.location.pathname));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const navigate = useCallback((next: string | null) => {
    window.history.pushState(null, "", next ? `/jobs/${next}` : "/");
    setJobId(next);
    window.scrollTo(0, 0);
  }, []);
  const onUploaded = useCallback(() => setRefreshKey((k) => k + 1), []);

  return (
    <div className="min-h-screen">
      <header className="bg-slate-900 text-white">
        <div className="mx-auto flex max-w-screen-2xl items-center gap-3 px-6 py-3">
          <a href="/" onClick={(e) => (e.preventDefault(), navigate(null))} className="flex items-center gap-2.5">
            <img src="/favicon.svg" alt="" className="h-7 w-7" />
            <span className="text-base font-semibold tracking-tight">Healer</span>
            <span className="text-sm text-slate-400">Review console</span>
          </a>
          <div className="ml-auto flex items-center gap-3 text-xs text-slate-400">
            {config && (
              <>
                <span className="rounded bg-slate-800 px-2 py-1 font-mono">gs://{config.bucket}</span>
                {config.local && <span className="rounded bg-teal-800 px-2 py-1 text-teal-100">local stack</span>}
                {config.user && <span>{config.user}</span>}
              </>
            )}
          </div>
        </div>
      </header>
      <ScreeningBanner />
      <main className="mx-auto max-w-screen-2xl space-y-6 px-6 py-6">
        {jobId ? (
          <JobDetail jobId={jobId} onBack={() => navigate(null)} />
        ) : (
          <>
            <UploadZone onUploaded={onUploaded} />
            <JobList refreshKey={refreshKey} onOpen={navigate} />
          </>
        )}
      </main>
      <footer className="mx-auto max-w-screen-2xl px-6 pb-8 text-xs text-slate-400">
        Images are screened for colorectal cancer by MedGemma 4B. Results are decision support for qualified staff only.
      </footer>
    </div>
  );
}
