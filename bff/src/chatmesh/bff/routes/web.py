"""The web UI: `clients/web`'s static export when it has been built, otherwise a
placeholder page saying how to build it. It answers every path no API route
matched, except under /api, which gets the API's JSON 404."""

from __future__ import annotations

import html
import os
import stat
from pathlib import Path

import anyio.to_thread
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from chatmesh.bff.errors import ApiError, render

# Next.js puts content-hashed bundles here: safe to cache forever.
IMMUTABLE_PREFIX = "_next/static/"


class WebFiles(StaticFiles):
    """StaticFiles for a Next.js export: `/rooms` is served from `rooms.html`
    (the export's default layout) as well as from `rooms/index.html`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await self._html_page(path, scope) or await super().get_response(path, scope)
        if path.startswith(IMMUTABLE_PREFIX) and response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers.setdefault("Cache-Control", "no-cache")
        return response

    async def _html_page(self, path: str, scope: Scope) -> Response | None:
        if scope["method"] not in ("GET", "HEAD") or path in ("", ".") or path.endswith("/"):
            return None
        try:
            _, found = await anyio.to_thread.run_sync(self.lookup_path, path)
            if found is not None:
                return None
            full_path, page = await anyio.to_thread.run_sync(self.lookup_path, path + ".html")
        except (OSError, ValueError):
            return None
        if page is None or not stat.S_ISREG(page.st_mode):
            return None
        return self.file_response(full_path, page, scope)


PLACEHOLDER = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ChatMesh</title>
</head>
<body>
<main>
<h1>ChatMesh</h1>
<p>The API is running, but the web UI has not been built yet
(nothing found in <code>{web_dir}</code>).</p>
<p>Build it with <code>make web</code>
(or <code>cd clients/web &amp;&amp; npm ci &amp;&amp; npm run build</code>)
and reload this page.</p>
<p>API description: <a href="/api/openapi.json">/api/openapi.json</a></p>
</main>
</body>
</html>
"""


def web_app(web_dir: Path) -> ASGIApp:
    """The app that answers paths no route matched."""
    ui: ASGIApp
    if (web_dir / "index.html").is_file():
        ui = WebFiles(directory=web_dir, html=True)
    else:
        page = HTMLResponse(PLACEHOLDER.format(web_dir=html.escape(os.fspath(web_dir))))

        async def placeholder(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["path"] != "/":
                await render(ApiError(404, "not_found", "no such page"))(scope, receive, send)
                return
            await page(scope, receive, send)

        ui = placeholder

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await WebSocketClose()(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/api" or path.startswith("/api/"):
            error = ApiError(404, "not_found", f"no API route {scope['method']} {path}")
            await render(error)(scope, receive, send)
            return
        await ui(scope, receive, send)

    return app
