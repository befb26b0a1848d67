import { useCallback, useEffect, useState } from "react";
import { apiGet } from "./api";

export type Params = Record<string, string | number | boolean | undefined | null>;

export interface Loaded<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/** GET path with params; refetches when they change; ignores answers to outdated requests. */
export function useApi<T>(path: string | null, params: Params = {}): Loaded<T> {
  const key = path === null ? "" : `${path}?${JSON.stringify(params)}`;
  const [state, setState] = useState<{ key: string; data: T | null; error: unknown }>({ key: "", data: null, error: null });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    if (path === null) return;
    let live = true;
    setState((s) => ({ key: s.key, data: s.key === key ? s.data : null, error: null }));
    apiGet<T>(path, params).then(
      (data) => live && setState({ key, data, error: null }),
      (error) => live && setState({ key, data: null, error }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  const current = state.key === key;
  return {
    data: current ? state.data : null,
    error: state.error,
    loading: !state.error && !(current && state.data !== null),
    reload,
  };
}
