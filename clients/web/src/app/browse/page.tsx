"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { Suspense, useEffect, useState, type FormEvent } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, Button, Field, Spinner, linkClass } from "@/components/ui";
import { api, errorText, q } from "@/lib/api";
import { normalizePublicRooms } from "@/lib/normalize";
import { joinRoom, upsertRoomFromApi, useChat } from "@/lib/store";
import type { Room } from "@/lib/types";

const PAGE = 30;

function Browse() {
  const router = useRouter();
  const mine = useChat((s) => s.rooms);
  const [publicRooms, setPublicRooms] = useState<Room[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [query, setQuery] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [createError, setCreateError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [loadingMore, setLoadingMore] = useState(false);

  // the directory: the first page again whenever the search changes (debounced)
  useEffect(() => {
    const ctl = new AbortController();
    const t = setTimeout(() => {
      api
        .get<unknown>(`/api/v1/rooms/public${q({ q: query.trim(), limit: PAGE })}`, ctl.signal)
        .then((d) => {
          const page = normalizePublicRooms(d);
          setPublicRooms(page.rooms);
          setCursor(page.next_cursor);
          setError(null);
        })
        .catch((e: unknown) => {
          if (!ctl.signal.aborted) setError(errorText(e));
        });
    }, query ? 250 : 0);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [query]);

  const more = async () => {
    if (!cursor) return;
    setLoadingMore(true);
    try {
      const page = normalizePublicRooms(await api.get<unknown>(`/api/v1/rooms/public${q({ q: query.trim(), limit: PAGE, cursor })}`));
      setPublicRooms((rooms) => [...(rooms ?? []), ...page.rooms.filter((r) => !rooms?.some((x) => x.id === r.id))]);
      setCursor(page.next_cursor);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setLoadingMore(false);
    }
  };

  const create = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    setBusy(true);
    setCreateError(null);
    try {
      const d = await api.post<unknown>("/api/v1/rooms", {
        name: String(f.get("name") ?? "").trim(),
        topic: String(f.get("topic") ?? "").trim(),
        visibility: f.get("private") === "on" ? "private" : "public",
      });
      const room = upsertRoomFromApi((d as { room?: unknown } | null)?.room ?? d);
      if (room) router.push(`/room?id=${encodeURIComponent(room.id)}`);
    } catch (err) {
      setCreateError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const join = async (room: Room) => {
    setError(null);
    try {
      await joinRoom(room.id);
      router.push(`/room?id=${encodeURIComponent(room.id)}`);
    } catch (err) {
      setError(errorText(err));
    }
  };

  const openLink = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const raw = String(new FormData(e.currentTarget).get("link") ?? "").trim();
    let id = raw;
    try {
      id = new URL(raw, window.location.origin).searchParams.get("id") ?? raw;
    } catch {
      /* a bare id */
    }
    if (id) router.push(`/room?id=${encodeURIComponent(id)}`);
  };

  return (
    <div className="mx-auto w-full max-w-3xl overflow-y-auto p-4">
      <h1 className="mb-4 text-xl font-semibold">Browse and create rooms</h1>
      <section aria-labelledby="create-h" className="mb-8 rounded-lg border border-gray-200 p-4 dark:border-gray-800">
        <h2 id="create-h" className="mb-3 font-semibold">Create a room</h2>
        <form onSubmit={(e) => void create(e)} className="grid gap-3 sm:grid-cols-2">
          {createError && <div className="sm:col-span-2"><Alert>{createError}</Alert></div>}
          <Field label="Name" name="name" required maxLength={80} />
          <Field label="Topic" name="topic" maxLength={250} />
          <label className="flex items-center gap-2 text-sm">
            <input type="checkbox" name="private" className="h-4 w-4" /> Private (invite only)
          </label>
          <div className="sm:text-right">
            <Button type="submit" disabled={busy}>Create room</Button>
          </div>
        </form>
      </section>
      <section aria-labelledby="link-h" className="mb-8">
        <h2 id="link-h" className="mb-3 font-semibold">Open a room by link</h2>
        <form onSubmit={openLink} className="flex flex-wrap items-end gap-2">
          <div className="min-w-0 flex-1">
            <Field label="Room link or id" name="link" required />
          </div>
          <Button type="submit" variant="secondary">Open</Button>
        </form>
      </section>
      <section aria-labelledby="public-h">
        <h2 id="public-h" className="mb-3 font-semibold">Public rooms</h2>
        <label htmlFor="public-q" className="mb-1 block text-sm font-medium">Search public rooms</label>
        <input
          id="public-q"
          type="search"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          maxLength={80}
          autoComplete="off"
          className="mb-3 w-full rounded-md border border-gray-300 bg-white px-3 py-2 dark:border-gray-600 dark:bg-gray-900"
        />
        {error && <Alert>{error}</Alert>}
        {!publicRooms && !error && <Spinner />}
        {publicRooms?.length === 0 &&
          (query.trim() ? (
            <p className="text-gray-700 dark:text-gray-300">No public room name starts with “{query.trim()}”.</p>
          ) : (
            <p className="text-gray-700 dark:text-gray-300">No public rooms yet: create the first one.</p>
          ))}
        <ul className="flex flex-col gap-2" aria-label="Public rooms">
          {publicRooms?.map((r) => {
            const member = r.is_member === true || r.id in mine;
            return (
              <li key={r.id} data-room-id={r.id} className="flex items-center gap-3 rounded-lg border border-gray-200 p-3 dark:border-gray-800">
                <span aria-hidden="true" className="inline-flex h-9 w-9 shrink-0 items-center justify-center rounded-md bg-gray-200 font-semibold text-gray-700 dark:bg-gray-700 dark:text-gray-200">
                  #
                </span>
                <div className="min-w-0 flex-1">
                  <p className="truncate font-medium">{r.name}</p>
                  <p className="truncate text-sm text-gray-700 dark:text-gray-300">
                    {r.topic || "No topic"} · {r.member_count} {r.member_count === 1 ? "member" : "members"}
                    {member && " · joined"}
                  </p>
                </div>
                {member ? (
                  <Link className={linkClass} href={`/room?id=${encodeURIComponent(r.id)}`} aria-label={`Open ${r.name}`}>Open</Link>
                ) : (
                  <Button onClick={() => void join(r)} aria-label={`Join ${r.name}`}>Join</Button>
                )}
              </li>
            );
          })}
        </ul>
        {cursor && (
          <div className="mt-3 text-center">
            <Button variant="secondary" onClick={() => void more()} disabled={loadingMore}>
              {loadingMore ? "Loading…" : "More rooms"}
            </Button>
          </div>
        )}
      </section>
    </div>
  );
}

export default function BrowsePage() {
  return (
    <Suspense>
      <AppShell title="Browse rooms">
        <Browse />
      </AppShell>
    </Suspense>
  );
}
