"use client";
import { useEffect, useId, useState } from "react";
import { api, errorText, q } from "@/lib/api";
import { listOf, normalizeProfile } from "@/lib/normalize";
import { rememberProfiles, useChat } from "@/lib/store";
import type { Profile } from "@/lib/types";
import { Alert, Avatar, Button } from "./ui";

export interface UserAction {
  label: string;
  ariaLabel: string;
  run: () => void;
  disabled?: boolean;
  /** For toggles (a multi-select): whether this person is picked. */
  pressed?: boolean;
}

/** Find people by name or username (debounced `GET /api/v1/users?q=`) and act on one. */
export function UserSearch({ label, exclude, action }: { label: string; exclude?: ReadonlySet<string>; action: (p: Profile) => UserAction }) {
  const id = useId();
  const meId = useChat((s) => s.me?.id);
  const [query, setQuery] = useState("");
  const [results, setResults] = useState<Profile[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const term = query.trim();
    if (!term) {
      setResults(null);
      return;
    }
    const ctl = new AbortController();
    const t = setTimeout(() => {
      api
        .get<unknown>(`/api/v1/users${q({ q: term, limit: 10 })}`, ctl.signal)
        .then((d) => {
          const people = listOf(d, "users", "profiles").map(normalizeProfile).filter((p): p is Profile => p !== null);
          rememberProfiles(people);
          setResults(people);
          setError(null);
        })
        .catch((e: unknown) => {
          if (!ctl.signal.aborted) setError(errorText(e));
        });
    }, 250);
    return () => {
      clearTimeout(t);
      ctl.abort();
    };
  }, [query]);

  const shown = results?.filter((p) => p.id !== meId && !exclude?.has(p.id));
  return (
    <div className="flex flex-col gap-2">
      <label htmlFor={id} className="text-sm font-medium">{label}</label>
      <input
        id={id}
        type="search"
        value={query}
        onChange={(e) => setQuery(e.target.value)}
        placeholder="Name or username"
        autoComplete="off"
        className="w-full rounded-md border border-gray-300 bg-white px-3 py-2 placeholder:text-gray-600 dark:border-gray-600 dark:bg-gray-900 dark:placeholder:text-gray-400"
      />
      {error && <Alert>{error}</Alert>}
      {shown?.length === 0 && <p className="text-sm text-gray-700 dark:text-gray-300">Nobody else matches “{query.trim()}”.</p>}
      {shown && shown.length > 0 && (
        <ul className="flex flex-col gap-1" aria-label={`${label}: results`}>
          {shown.map((p) => {
            const a = action(p);
            return (
              <li key={p.id} className="flex items-center gap-2 rounded-md px-1 py-1">
                <Avatar name={p.display_name || p.username} src={p.avatar_url} size={28} />
                <span className="min-w-0 flex-1">
                  <span className="block truncate text-sm font-medium">{p.display_name}</span>
                  <span className="block truncate text-xs text-gray-700 dark:text-gray-300">@{p.username}</span>
                </span>
                <Button variant={a.pressed ? "primary" : "secondary"} className="px-2 text-xs" aria-label={a.ariaLabel} aria-pressed={a.pressed} disabled={a.disabled} onClick={a.run}>
                  {a.label}
                </Button>
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}
