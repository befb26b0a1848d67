// Loading, error and empty states: each says what is happening and what to do.
import type { ReactNode } from "react";
import { ApiError } from "../api";

export function Loading({ what }: { what: string }) {
  return (
    <p className="state loading" role="status">
      Loading {what}…
    </p>
  );
}

export function ErrorState({ error, onRetry }: { error: unknown; onRetry?: () => void }) {
  const api = error instanceof ApiError ? error : null;
  return (
    <div className="state error" role="alert">
      <strong>{api ? `Error ${api.status || ""} ${api.code}`.replace("  ", " ") : "Error"}</strong>: {api ? api.message : String(error)}
      <p>{api ? api.advice : "Reload the page; if it persists, the browser console says more."}</p>
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <div className="state empty">{children}</div>;
}
