"""Web UI benchmark: Lighthouse-style numbers for the room view, measured with
Debian's Chromium over the Chrome DevTools Protocol against the real mesh
(`python -m chatmesh.cli dev`, SQLite, the BFF serving clients/web/out with gzip).

Prints:
- the static export's size (files, bytes on disk, bytes gzipped);
- first-load JS of /room: from the export (the module scripts room.html loads,
  gzipped as the BFF does) and as measured on the wire in the browser;
- cold-load timings of /room?id=… (a room with 60 messages), median of N runs,
  without and with 4x CPU throttling: first contentful paint, DOM interactive,
  load, "app interactive" (messages shown and the composer enabled) and total
  blocking time (long tasks after FCP).

    uv run python bench/web.py [--runs 5]

Needs the UI built (`make web`) and /usr/bin/chromium. Numbers from a shared
machine are noisy: compare medians of runs taken the same way.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from chatmesh.common.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
WEB_OUT = ROOT / "clients" / "web" / "out"
CHROMIUM = os.environ.get("CHATMESH_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
GZIP_LEVEL = 6  # as the BFF compresses (chatmesh.bff.middleware.compression)
TARGET_KB = 250
SCRIPT_SRC = re.compile(r'<script(?![^>]*noModule)[^>]*\ssrc="(/_next/[^"]+\.js)"', re.IGNORECASE)

# Resolves with performance.now() once the room is usable: messages rendered and
# the composer enabled. Long tasks and paints are collected from page start.
OBSERVE = """
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
"""
READY = """() => {
  const box = document.querySelector('textarea#composer');
  const shown = document.querySelectorAll('li[data-message-id]').length >= 50;
  return box && !box.disabled && shown ? performance.now() : null;
}"""
TIMINGS = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const fcpAt = fcp ? fcp.startTime : 0;
  const tbt = window.__longtasks
    .filter(([start]) => start >= fcpAt)
    .reduce((sum, [, d]) => sum + Math.max(0, d - 50), 0);
  return { fcp: fcpAt, dom_interactive: nav.domInteractive, load: nav.loadEventEnd, tbt };
}"""


def kib(n: float) -> str:
    return f"{n / 1024:7.1f} KiB"


def export_size(out: Path) -> dict[str, int]:
    files = [p for p in out.rglob("*") if p.is_file()]
    raw = sum(p.stat().st_size for p in files)
    zipped = sum(len(gzip.compress(p.read_bytes(), GZIP_LEVEL)) for p in files)
    return {"files": len(files), "bytes": raw, "gzip": zipped}


def first_load_js_from_export(out: Path, page: str) -> tuple[int, int, int]:
    """(scripts, raw bytes, gzip bytes) of the module scripts `page` loads."""
    html = (out / page).read_text()
    scripts = sorted(set(SCRIPT_SRC.findall(html)))
    raw = gz = 0
    for src in scripts:
        data = (out / src.lstrip("/")).read_bytes()
        raw += len(data)
        gz += len(gzip.compress(data, GZIP_LEVEL))
    return len(scripts), raw, gz


@contextmanager
def mesh(workdir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "CHATMESH_DEV_HTTP_PORT": str(port),
        "CHATMESH_DEV_DATA_DIR": str(workdir / "data"),
        "CHATMESH_DEV_WEB_DIR": str(WEB_OUT),
        "CHATMESH_METRICS_PORT": "0",
        "CHATMESH_LOG_LEVEL": "warning",
        "CHATMESH_RATE_LIMIT_AUTH_IP": "1000",
    }
    for name in ("AUTH", "USER", "CHAT", "MAIL", "AI"):
        env[f"CHATMESH_DEV_{name}_PORT"] = str(free_port())
    log = (workdir / "dev.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatmesh.cli", "dev"], env=env, stdout=log, stderr=log, cwd=ROOT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"chatmesh dev exited: see {workdir / 'dev.log'}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("chatmesh dev not ready after 60 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def seed_room(browser: Browser, base: str, workdir: Path) -> tuple[Path, str]:
    """A signed-in user (saved storage state) and a room with 60 messages."""
    ctx = browser.new_context(base_url=base)
    origin = {"Origin": base}
    tag = uuid.uuid4().hex[:8]
    registered = ctx.request.post(
        "/api/v1/auth/register",
        data={
            "email": f"bench-{tag}@example.test",
            "username": f"bench_{tag}",
            "password": "bench password 123456",
            "display_name": "Bench Person",
        },
        headers=origin,
    )
    assert registered.ok, registered.text()
    room = ctx.request.post("/api/v1/rooms", data={"name": f"bench {tag}"}, headers=origin)
    assert room.ok, room.text()
    room_id = room.json()["id"]
    for n in range(60):
        sent = ctx.request.post(
            f"/api/v1/rooms/{room_id}/messages",
            data={"body": f"message {n}: " + "lorem ipsum " * 8, "client_msg_id": f"b{n}"},
            headers=origin,
        )
        assert sent.ok, sent.text()
    state = workdir / "state.json"
    ctx.storage_state(path=str(state))
    ctx.close()
    return state, room_id


def cold_load(browser: Browser, base: str, state: Path, path: str, cpu: float) -> dict[str, Any]:
    """One load with an empty cache; bytes are what crossed the wire."""
    ctx: BrowserContext = browser.new_context(
        base_url=base, storage_state=str(state), viewport={"width": 1280, "height": 800}
    )
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    if cpu > 1:
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu})
    kinds: dict[str, str] = {}
    wire: dict[str, int] = {}
    cdp.on("Network.responseReceived", lambda e: kinds.__setitem__(e["requestId"], e["type"]))
    cdp.on(
        "Network.loadingFinished",
        lambda e: wire.__setitem__(e["requestId"], int(e["encodedDataLength"])),
    )
    page.add_init_script(OBSERVE)
    page.goto(path, wait_until="commit")
    ready_at = page.wait_for_function(READY, polling="raf", timeout=60_000).json_value()
    page.wait_for_load_state("load")
    timings: dict[str, Any] = page.evaluate(TIMINGS)
    timings["app_interactive"] = ready_at
    js = [rid for rid, kind in kinds.items() if kind == "Script" and rid in wire]
    timings["js_wire"] = sum(wire[rid] for rid in js)
    timings["js_files"] = len(js)
    ctx.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (WEB_OUT / "room.html").is_file():
        raise SystemExit(f"{WEB_OUT} has no room.html: build the UI first (make web)")

    size = export_size(WEB_OUT)
    print(
        f"static export        {size['files']} files, {kib(size['bytes'])} on disk, "
        f"{kib(size['gzip'])} gzipped (level {GZIP_LEVEL})"
    )
    scripts, raw, gz = first_load_js_from_export(WEB_OUT, "room.html")
    verdict = "under" if gz < TARGET_KB * 1000 else "OVER"
    print(
        f"first-load JS /room  {scripts} scripts, {kib(raw)} raw, {kib(gz)} gzip "
        f"({verdict} the {TARGET_KB} kB target)"
    )

    with tempfile.TemporaryDirectory() as tmp, mesh(Path(tmp)) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        state, room_id = seed_room(browser, base, Path(tmp))
        path = f"/room?id={room_id}"
        cold_load(browser, base, state, path, 1)  # warm the server side (first compiles)
        for cpu in (1, 4):
            runs = [cold_load(browser, base, state, path, cpu) for _ in range(args.runs)]

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(float(r[key]) for r in runs)

            print(
                f"/room cold, cpu x{cpu}: JS on the wire {kib(med('js_wire'))} "
                f"({int(med('js_files'))} files) | FCP {med('fcp'):6.0f} ms | "
                f"DOM interactive {med('dom_interactive'):6.0f} ms | "
                f"app interactive {med('app_interactive'):6.0f} ms | "
                f"load {med('load'):6.0f} ms | TBT {med('tbt'):5.0f} ms  "
                f"(median of {len(runs)})"
            )
        browser.close()


if __name__ == "__main__":
    main()
