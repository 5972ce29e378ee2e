import { useEffect, useState, type DependencyList } from "react";

/**
 * Fetch now, then again every `intervalMs` for as long as `again(latest)` holds (`latest` is null
 * after a failed fetch). When `deps` change or the component unmounts, the request in flight is
 * aborted and polling stops; the last data and error stay until the next fetch replaces them.
 */
export function usePolling<T>(
  fetcher: (signal: AbortSignal) => Promise<T>,
  again: (latest: T | null) => boolean,
  intervalMs: number,
  deps: DependencyList,
): { data: T | null; error: string | null } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    const controller = new AbortController();
    const load = async () => {
      let latest: T | null = null;
      try {
        latest = await fetcher(controller.signal);
        if (!alive) return;
        setData(latest);
        setError(null);
      } catch (exc) {
        if (!alive || (exc as Error).name === "AbortError") return;
        setError((exc as Error).message);
      }
      if (alive && again(latest)) timer = window.setTimeout(load, intervalMs);
    };
    void load();
    return () => {
      alive = false;
      controller.abort();
      window.clearTimeout(timer);
    };
  }, deps); // the caller's deps decide when to start over (fetcher and again are fresh closures)

  return { data, error };
}
