// A router of a few lines: pages are paths, their state is the query string, so every view
// has a link that can be shared or opened in a new tab. The central serves index.html for
// these paths (central/web_static.py).
import { useEffect, useState } from "react";

export type Route = { path: string; params: URLSearchParams };

function current(): Route {
  return { path: window.location.pathname, params: new URLSearchParams(window.location.search) };
}

export function href(path: string, params: Record<string, string | number | undefined | null> = {}): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export function navigate(to: string): void {
  window.history.pushState(null, "", to);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    window.addEventListener("popstate", update);
    return () => window.removeEventListener("popstate", update);
  }, []);
  return route;
}

/** Same-tab navigation for plain left clicks on in-app links; others (new tab) go to the browser. */
export function onLinkClick(event: React.MouseEvent<HTMLAnchorElement>): void {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const target = event.currentTarget.getAttribute("href");
  if (!target || event.currentTarget.target === "_blank") return;
  event.preventDefault();
  navigate(target);
}
