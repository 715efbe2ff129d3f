"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { Suspense, useEffect, useState, type FormEvent } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, Button, Field, Spinner, linkClass } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { listOf, normalizeRoom } from "@/lib/normalize";
import { joinRoom, upsertRoomFromApi, useChat } from "@/lib/store";
import type { Room } from "@/lib/types";

function Browse() {
  const router = useRouter();
  const mine = useChat((s) => s.rooms);
  const [publicRooms, setPublicRooms] = useState<Room[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [createError, setCreateError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api
      .get<unknown>("/api/v1/rooms?visibility=public")
      .then((d) => setPublicRooms(listOf(d, "rooms").map(normalizeRoom).filter((r): r is Room => r !== null && r.visibility === "public")))
      .catch((e: unknown) => setError(errorText(e)));
  }, []);

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
        {error && <Alert>{error}</Alert>}
        {!publicRooms && !error && <Spinner />}
        {publicRooms?.length === 0 && <p className="text-gray-700 dark:text-gray-300">No public rooms yet: create the first one.</p>}
        <ul className="flex flex-col gap-2">
          {publicRooms?.map((r) => (
            <li key={r.id} className="flex items-center gap-3 rounded-lg border border-gray-200 p-3 dark:border-gray-800">
              <div className="min-w-0 flex-1">
                <p className="truncate font-medium"># {r.name}</p>
                <p className="truncate text-sm text-gray-700 dark:text-gray-300">{r.topic || "No topic"} · {r.member_count} members</p>
              </div>
              {r.id in mine ? (
                <Link className={linkClass} href={`/room?id=${encodeURIComponent(r.id)}`}>Open</Link>
              ) : (
                <Button onClick={() => void join(r)} aria-label={`Join ${r.name}`}>Join</Button>
              )}
            </li>
          ))}
        </ul>
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
