"use client";
// Who is signed in: GET /api/v1/me once per page load, shared by every component.
import { useEffect, useSyncExternalStore } from "react";
import { api, ApiError } from "./api";
import type { User } from "./types";

type MeState = { status: "loading" } | { status: "signed-in"; user: User } | { status: "signed-out" } | { status: "error"; message: string };

let me: MeState = { status: "loading" };
let inflight: Promise<void> | null = null;
const listeners = new Set<() => void>();

function set(next: MeState) {
  me = next;
  for (const l of listeners) l();
}

export function loadMe(force = false): Promise<void> {
  if (inflight && !force) return inflight;
  inflight = api
    .get<User>("/api/v1/me")
    .then((user) => set({ status: "signed-in", user }))
    .catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 401) set({ status: "signed-out" });
      else set({ status: "error", message: e instanceof ApiError ? e.message : "Cannot reach the server" });
    });
  return inflight;
}

export function setMe(user: User | null) {
  inflight = Promise.resolve();
  set(user ? { status: "signed-in", user } : { status: "signed-out" });
}

export function useMe(): MeState {
  const state = useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => me,
    () => me,
  );
  useEffect(() => {
    if (me.status === "loading") void loadMe();
  }, []);
  return state;
}

/** Only same-site paths are accepted as a post-login destination. */
export function safeNext(next: string | null): string {
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/rooms";
}
