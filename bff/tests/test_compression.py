"""gzip over real HTTP: the UI's files and JSON above 1 KiB are compressed for
clients that accept gzip, and left alone for clients that do not, for small
bodies and for the auth routes (tokens next to caller input: BREACH)."""

from __future__ import annotations

import gzip
import json

import httpx
from starlette.responses import JSONResponse
from starlette.routing import Route

SCRIPT = "".join(f"export const value{n} = {n} * 2; // a line of the bundle\n" for n in range(800))


async def raw_get(
    client: httpx.AsyncClient, path: str, encoding: str
) -> tuple[httpx.Response, bytes]:
    """The response and its body as it crossed the wire (httpx would decode gzip)."""
    async with client.stream("GET", path, headers={"Accept-Encoding": encoding}) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, body


async def test_ui_files_are_gzipped_for_clients_that_accept_it(sqlite_auth, start_bff, tmp_path):
    out = tmp_path / "out"
    (out / "_next" / "static" / "chunks").mkdir(parents=True)
    (out / "index.html").write_text("<!doctype html><title>ChatMesh</title>" + "<p>hi</p>" * 300)
    (out / "_next" / "static" / "chunks" / "app.js").write_text(SCRIPT)
    (out / "_next" / "static" / "chunks" / "tiny.js").write_text("console.log(1)")
    bff = await start_bff(auth_address=sqlite_auth.address, web_dir=out)
    async with bff.client() as client:
        script, script_body = await raw_get(client, "/_next/static/chunks/app.js", "gzip, br")
        assert script.status_code == 200
        assert script.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in script.headers["vary"].lower()
        assert gzip.decompress(script_body).decode() == SCRIPT
        assert len(script_body) < len(SCRIPT) / 5
        # Headers of the other layers survive.
        assert "immutable" in script.headers["cache-control"]
        assert script.headers["content-type"].startswith("text/javascript")

        page, page_body = await raw_get(client, "/", "gzip")
        assert page.headers["content-encoding"] == "gzip"
        assert "content-security-policy" in page.headers
        assert b"<title>ChatMesh</title>" in gzip.decompress(page_body)

        plain, plain_body = await raw_get(client, "/_next/static/chunks/app.js", "identity")
        assert "content-encoding" not in plain.headers
        assert plain_body.decode() == SCRIPT

        tiny, tiny_body = await raw_get(client, "/_next/static/chunks/tiny.js", "gzip")
        assert "content-encoding" not in tiny.headers  # below 1 KiB: not worth it
        assert tiny_body == b"console.log(1)"


async def test_json_above_1_kib_is_gzipped_but_not_small_or_auth_bodies(sqlite_auth, start_bff):
    big = {"items": [f"entry number {n}" for n in range(200)]}

    async def auth_like(_):
        return JSONResponse(big)

    def add_auth_route(app):
        app.router.routes.insert(0, Route("/api/v1/auth/big-test", auth_like))

    bff = await start_bff(auth_address=sqlite_auth.address, prepare=add_auth_route)
    async with bff.client() as client:
        spec, spec_body = await raw_get(client, "/api/openapi.json", "gzip")
        assert spec.headers["content-encoding"] == "gzip"
        assert spec.headers["content-type"].startswith("application/json")
        assert "paths" in json.loads(gzip.decompress(spec_body))
        assert int(spec.headers["content-length"]) == len(spec_body)

        health, health_body = await raw_get(client, "/healthz", "gzip")
        assert "content-encoding" not in health.headers
        assert json.loads(health_body)["status"] == "ok"

        auth, auth_body = await raw_get(client, "/api/v1/auth/big-test", "gzip")
        assert "content-encoding" not in auth.headers
        assert json.loads(auth_body) == big

        # An error body is JSON too, in the one shape, compressed or not.
        error = await client.get("/api/v1/rooms", headers={"Accept-Encoding": "gzip"})
        assert error.status_code == 401
        assert error.json()["error"]["code"]
