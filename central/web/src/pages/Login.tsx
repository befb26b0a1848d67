import { useState } from "react";
import { ApiError, apiGet, setToken } from "../api";

/** Paste a viewer token; it is checked against the API and kept in sessionStorage (this tab). */
export function LoginPage({ onLogin }: { onLogin: (token: string) => void }) {
  const [text, setText] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);

  async function submit(event: React.FormEvent) {
    event.preventDefault();
    const token = text.trim();
    if (!token) {
      setProblem("Paste a viewer token first (it starts with mvw_).");
      return;
    }
    if (token.startsWith("mgw_")) {
      setProblem("That is a gateway token (mgw_…): it can only upload. Create a viewer token (command below).");
      return;
    }
    setChecking(true);
    setToken(token);
    try {
      await apiGet("/api/v1/gateways");
      onLogin(token);
    } catch (error) {
      setToken(null);
      setProblem(
        error instanceof ApiError && error.status === 401
          ? "The central does not know this token, or it was revoked. Check for a copy-paste slip, or create a new one."
          : error instanceof ApiError
            ? `${error.message}. ${error.advice}`
            : String(error),
      );
    } finally {
      setChecking(false);
    }
  }

  return (
    <div className="login">
      <h1>meter-agent central</h1>
      <form onSubmit={submit}>
        <label htmlFor="token">Viewer token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          placeholder="mvw_…"
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
        <button type="submit" disabled={checking}>
          {checking ? "Checking…" : "Log in"}
        </button>
        {problem && (
          <p className="state error" role="alert">
            {problem}
          </p>
        )}
      </form>
      <section className="help">
        <h2>No token yet?</h2>
        <p>On the machine that runs the central service (with its DATABASE_URL set), create a viewer; the token is printed once:</p>
        <pre>/usr/bin/python3 -m central viewer create ops</pre>
        <p>
          A lost token cannot be shown again: <code>/usr/bin/python3 -m central viewer rotate ops</code> prints a new one. The token
          stays in this browser tab only (sessionStorage) and is gone when the tab is closed.
        </p>
      </section>
    </div>
  );
}
