"use client";
import { Suspense, useEffect, useState, type FormEvent } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, Avatar, Button, Field, Spinner } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { normalizeProfile } from "@/lib/normalize";
import { loadMe } from "@/lib/session";
import { rememberProfiles } from "@/lib/store";
import type { Profile } from "@/lib/types";

function EditProfile() {
  const [p, setP] = useState<Profile | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    api
      .get<unknown>("/api/v1/users/me/profile")
      .then((d) => setP(normalizeProfile(d)))
      .catch((e: unknown) => setError(errorText(e)));
  }, []);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const field = (k: string) => String(f.get(k) ?? "").trim();
    setBusy(true);
    setSaved(false);
    setError(null);
    try {
      // only what changed (the API treats "" as "clear")
      const changes: Record<string, string> = {};
      for (const k of ["display_name", "bio", "status_emoji", "status_text", "time_zone", "avatar_url"] as const) {
        if (field(k) !== (p?.[k] ?? "")) changes[k] = field(k);
      }
      const d = await api.patch<unknown>("/api/v1/users/me/profile", changes);
      const updated = normalizeProfile(d);
      if (updated) rememberProfiles([updated]);
      setP(updated ?? p);
      setSaved(true);
      void loadMe(true);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="mx-auto w-full max-w-xl overflow-y-auto p-4">
      <h1 className="mb-4 text-xl font-semibold">Edit your profile</h1>
      {error && <Alert>{error}</Alert>}
      {!p && !error && <Spinner />}
      {p && (
        <form onSubmit={(e) => void submit(e)} className="flex flex-col gap-4">
          {saved && <Alert kind="success">Profile saved.</Alert>}
          <div className="flex items-center gap-3">
            <Avatar name={p.display_name || p.username} src={p.avatar_url} size={64} />
            <p className="text-sm text-gray-700 dark:text-gray-300">Your picture: an https image URL, or your initials.</p>
          </div>
          <Field label="Display name" name="display_name" defaultValue={p.display_name} required maxLength={64} />
          <div className="flex flex-col gap-1">
            <label htmlFor="bio" className="text-sm font-medium">Bio</label>
            <textarea id="bio" name="bio" defaultValue={p.bio} maxLength={500} rows={4} className="rounded-md border border-gray-300 bg-white px-3 py-2 dark:border-gray-600 dark:bg-gray-900" />
          </div>
          <div className="grid grid-cols-[5rem_1fr] gap-3">
            <Field label="Emoji" name="status_emoji" defaultValue={p.status_emoji} maxLength={8} />
            <Field label="Status" name="status_text" defaultValue={p.status_text} maxLength={100} />
          </div>
          <Field label="Time zone" name="time_zone" defaultValue={p.time_zone} hint={`For example ${Intl.DateTimeFormat().resolvedOptions().timeZone}`} />
          <Field label="Avatar URL" name="avatar_url" type="url" defaultValue={p.avatar_url} hint="https:// only" />
          <Button type="submit" disabled={busy}>Save</Button>
        </form>
      )}
    </div>
  );
}

export default function ProfilePage() {
  return (
    <Suspense>
      <AppShell title="Edit profile">
        <EditProfile />
      </AppShell>
    </Suspense>
  );
}
