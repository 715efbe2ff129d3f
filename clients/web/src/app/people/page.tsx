"use client";
import Link from "next/link";
import { Suspense, useEffect, useState } from "react";
import { AppShell } from "@/components/AppShell";
import { PersonRow } from "@/components/PersonRow";
import { Alert, Button, Spinner, linkClass } from "@/components/ui";
import { api, errorText, q } from "@/lib/api";
import { listOf, normalizeProfile } from "@/lib/normalize";
import { sendFriendRequest, useStartDm } from "@/lib/people";
import { pushToast, rememberProfiles } from "@/lib/store";
import type { Profile } from "@/lib/types";

function People() {
  const [query, setQuery] = useState("");
  const [results, setResults] = useState<Profile[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const startDm = useStartDm();

  useEffect(() => {
    const term = query.trim();
    if (!term) {
      setResults(null);
      return;
    }
    const ctl = new AbortController();
    const t = setTimeout(() => {
      setBusy(true);
      api
        .get<unknown>(`/api/v1/users${q({ q: term })}`, ctl.signal)
        .then((d) => {
          const people = listOf(d, "users", "profiles").map(normalizeProfile).filter((p): p is Profile => p !== null);
          rememberProfiles(people);
          setResults(people);
          setError(null);
        })
        .catch((e: unknown) => {
          if (!ctl.signal.aborted) setError(errorText(e));
        })
        .finally(() => setBusy(false));
    }, 250);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [query]);

  const add = (p: Profile) =>
    sendFriendRequest(p.id)
      .then(() => pushToast({ title: "Friend request sent", body: `to ${p.display_name}` }))
      .catch((e: unknown) => setError(errorText(e)));

  return (
    <div className="mx-auto w-full max-w-2xl overflow-y-auto p-4">
      <div className="mb-4 flex flex-wrap items-baseline justify-between gap-2">
        <h1 className="text-xl font-semibold">People</h1>
        <Link className={linkClass} href="/friends">Friends and requests</Link>
      </div>
      <label htmlFor="people-q" className="mb-1 block text-sm font-medium">Search by name or username</label>
      <input
        id="people-q"
        type="search"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        className="mb-4 w-full rounded-md border border-gray-300 bg-white px-3 py-2 dark:border-gray-600 dark:bg-gray-900"
        autoComplete="off"
      />
      {error && <Alert>{error}</Alert>}
      {busy && <Spinner label="Searching…" />}
      {results?.length === 0 && <p className="text-gray-700 dark:text-gray-300">Nobody matches “{query}”.</p>}
      <ul className="flex flex-col gap-2">
        {results?.map((p) => (
          <PersonRow key={p.id} p={p}>
            <Button variant="secondary" onClick={() => void startDm(p.id).catch((e: unknown) => setError(errorText(e)))} aria-label={`Message ${p.display_name}`}>Message</Button>
            {p.relationship !== "friend" && p.relationship !== "self" && p.relationship !== "blocked" && p.relationship !== "request_sent" && (
              <Button onClick={() => void add(p)} aria-label={`Add ${p.display_name} as a friend`}>Add friend</Button>
            )}
          </PersonRow>
        ))}
      </ul>
    </div>
  );
}

export default function PeoplePage() {
  return (
    <Suspense>
      <AppShell title="People">
        <People />
      </AppShell>
    </Suspense>
  );
}
