"use client";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useEffect, useState, type FormEvent } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, Button, Spinner } from "@/components/ui";
import { api, errorText, q as qs } from "@/lib/api";
import { listOf, normalizeMessage } from "@/lib/normalize";
import { displayName, roomTitle, useChat } from "@/lib/store";
import { highlight } from "@/lib/text";
import type { HighlightSpan, SearchHit } from "@/lib/types";

function toHit(raw: unknown): SearchHit | null {
  const o = raw as { message?: unknown; highlight?: unknown } | null;
  const message = normalizeMessage(o?.message ?? raw);
  if (!message) return null;
  const spans = Array.isArray(o?.highlight)
    ? (o.highlight as unknown[]).filter((h): h is HighlightSpan => typeof (h as HighlightSpan)?.text === "string").map((h) => ({ text: h.text, match: Boolean(h.match) }))
    : [];
  return { message, highlight: spans };
}

function Search() {
  const router = useRouter();
  const params = useSearchParams();
  const query = params.get("q") ?? "";
  const roomId = params.get("room_id") ?? "";
  const s = useChat((x) => x);
  const [hits, setHits] = useState<SearchHit[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!query.trim()) {
      setHits(null);
      return;
    }
    setHits(null);
    setError(null);
    api
      .get<unknown>(`/api/v1/search${qs({ q: query, room_id: roomId })}`)
      .then((d) => setHits(listOf(d, "results", "hits", "messages").map(toHit).filter((h): h is SearchHit => h !== null)))
      .catch((e: unknown) => setError(errorText(e)));
  }, [query, roomId]);

  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    router.push(`/search${qs({ q: String(f.get("q") ?? "").trim(), room_id: String(f.get("room_id") ?? "") })}`);
  };

  return (
    <div className="mx-auto w-full max-w-3xl overflow-y-auto p-4">
      <h1 className="mb-4 text-xl font-semibold">Search messages</h1>
      <form role="search" onSubmit={submit} className="mb-4 flex flex-wrap gap-2">
        <label htmlFor="q" className="sr-only">Search for</label>
        <input id="q" name="q" type="search" defaultValue={query} key={query} className="min-w-0 flex-1 rounded-md border border-gray-300 bg-white px-3 py-2 dark:border-gray-600 dark:bg-gray-900" />
        <label htmlFor="room" className="sr-only">In room</label>
        <select id="room" name="room_id" defaultValue={roomId} className="rounded-md border border-gray-300 bg-white px-2 py-2 dark:border-gray-600 dark:bg-gray-900">
          <option value="">All rooms</option>
          {Object.values(s.rooms).map((r) => (
            <option key={r.id} value={r.id}>{roomTitle(r, s)}</option>
          ))}
        </select>
        <Button type="submit">Search</Button>
      </form>
      {error && <Alert>{error}</Alert>}
      {query && !hits && !error && <Spinner label="Searching…" />}
      {hits?.length === 0 && <p className="text-gray-700 dark:text-gray-300">No messages match “{query}”.</p>}
      <ul className="flex flex-col gap-2">
        {hits?.map((h) => {
          const room = s.rooms[h.message.room_id];
          const spans = h.highlight.length > 0 ? h.highlight.map((x) => ({ text: x.text, kind: x.match ? "match" : "text" })) : highlight(h.message.body, query);
          return (
            <li key={h.message.id}>
              <Link
                href={`/room?id=${encodeURIComponent(h.message.room_id)}&message=${encodeURIComponent(h.message.id)}`}
                className="block rounded-lg border border-gray-200 p-3 hover:bg-gray-50 dark:border-gray-800 dark:hover:bg-gray-900"
              >
                <span className="block text-sm text-gray-700 dark:text-gray-300">
                  {room ? roomTitle(room, s) : "A room"} · {displayName(h.message.sender_id)} · {new Date(h.message.created_at).toLocaleString()}
                </span>
                <span className="msg-body block">
                  {spans.map((x, i) => (x.kind === "match" ? <mark key={i} className="rounded bg-yellow-200 px-0.5 text-gray-950 dark:bg-yellow-600 dark:text-white">{x.text}</mark> : <span key={i}>{x.text}</span>))}
                </span>
              </Link>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

export default function SearchPage() {
  return (
    <Suspense>
      <AppShell title="Search">
        <Search />
      </AppShell>
    </Suspense>
  );
}
