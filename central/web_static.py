"""The dashboard's built files (central/web/dist), served by the same app as the API.

Why here and not behind a separate web server: one service runs the whole central side. The
dashboard is a single-page app whose pages are paths (/device?device_id=...), so each page path
answers index.html; hashed files under /assets never change and may be cached for a year, and
go out gzipped to browsers that accept it. When
the bundle has not been built, the page paths say how to build it and the API is unaffected.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles

DEFAULT_DIST = Path(__file__).resolve().parent / "web" / "dist"
PAGES = ("/", "/device", "/quality", "/raw")

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>dashboard not built</title>
<h1>The dashboard is not built</h1>
<p>The API works (see <a href="/docs">/docs</a>). To serve the dashboard, build it once:</p>
<pre>cd central/web &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>then restart the central service (it serves {dist}).</p>"""


class _ImmutableAssets(StaticFiles):
    async def get_response(self, path, scope):  # type: ignore[override]
        try:
            response = await super().get_response(path, scope)
        except OSError:  # a name the file system refuses (too long, ...): there is no such file
            return Response("Not Found", status_code=404, media_type="text/plain")
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def mount_dashboard(app: FastAPI, dist: Path) -> None:
    """Add the dashboard's routes; call after the API routers so API paths always win."""
    index = dist / "index.html"
    if (dist / "assets").is_dir():
        # gzip for the bundle only (the API's responses are left as they are): ~3.5x fewer bytes
        app.mount("/assets", GZipMiddleware(_ImmutableAssets(directory=dist / "assets"), minimum_size=1024),
                  name="dashboard-assets")

    def page() -> Response:
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT.format(dist=dist), status_code=503)
        # index.html names the current hashed assets: never cache it, so a rebuild shows at once.
        return FileResponse(index, headers={"Cache-Control": "no-cache"})

    for path in PAGES:
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
