"use client";
import { Suspense, useCallback, useEffect, useState } from "react";
import { AppShell } from "@/components/AppShell";
import { PersonRow } from "@/components/PersonRow";
import { Alert, Button, Spinner } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { listOf, normalizeFriendRequest, normalizeProfile } from "@/lib/normalize";
import { acceptRequest, declineRequest, removeFriend, unblock, useStartDm } from "@/lib/people";
import { rememberProfiles } from "@/lib/store";
import type { FriendRequest, Profile } from "@/lib/types";

interface Data {
  friends: Profile[];
  requests: FriendRequest[];
  blocked: Profile[];
}

function Friends() {
  const [data, setData] = useState<Data | null>(null);
  const [error, setError] = useState<string | null>(null);
  const startDm = useStartDm();
  const load = useCallback(() => {
    Promise.all([api.get<unknown>("/api/v1/friends"), api.get<unknown>("/api/v1/blocks").catch(() => null)])
      .then(([d, b]) => {
        const o = (d ?? {}) as Record<string, unknown>;
        const friends = listOf(d, "friends").map(normalizeProfile).filter((p): p is Profile => p !== null);
        const reqs = [
          ...listOf(o.requests, "requests"),
          ...listOf(o.incoming, "incoming").map((r) => ({ direction: "incoming", ...(r as object) })),
          ...listOf(o.outgoing, "outgoing").map((r) => ({ direction: "outgoing", ...(r as object) })),
        ];
        const requests = reqs.map(normalizeFriendRequest).filter((r): r is FriendRequest => r !== null);
        const blocked = listOf(b, "blocked").map(normalizeProfile).filter((p): p is Profile => p !== null);
        rememberProfiles([...friends, ...requests.map((r) => r.profile)]);
        setData({ friends, requests, blocked });
      })
      .catch((e: unknown) => setError(errorText(e)));
  }, []);
  useEffect(load, [load]);
  const act = (f: () => Promise<unknown>) => () => {
    setError(null);
    f().then(load).catch((e: unknown) => setError(errorText(e)));
  };
  const incoming = data?.requests.filter((r) => r.direction === "incoming") ?? [];
  const outgoing = data?.requests.filter((r) => r.direction === "outgoing") ?? [];
  return (
    <div className="mx-auto flex w-full max-w-2xl flex-col gap-6 overflow-y-auto p-4">
      <h1 className="text-xl font-semibold">Friends</h1>
      {error && <Alert>{error}</Alert>}
      {!data && !error && <Spinner />}
      {data && (
        <>
          <section aria-labelledby="in-h">
            <h2 id="in-h" className="mb-2 font-semibold">Requests for you ({incoming.length})</h2>
            <ul className="flex flex-col gap-2">
              {incoming.map((r) => (
                <PersonRow key={r.id} p={r.profile}>
                  <Button onClick={act(() => acceptRequest(r.id))} aria-label={`Accept ${r.profile.display_name}`}>Accept</Button>
                  <Button variant="secondary" onClick={act(() => declineRequest(r.id))} aria-label={`Decline ${r.profile.display_name}`}>Decline</Button>
                </PersonRow>
              ))}
            </ul>
          </section>
          <section aria-labelledby="f-h">
            <h2 id="f-h" className="mb-2 font-semibold">Friends ({data.friends.length})</h2>
            {data.friends.length === 0 && <p className="text-gray-700 dark:text-gray-300">No friends yet. Find people on the People page.</p>}
            <ul className="flex flex-col gap-2">
              {data.friends.map((p) => (
                <PersonRow key={p.id} p={p}>
                  <Button onClick={act(() => startDm(p.id))} aria-label={`Message ${p.display_name}`}>Message</Button>
                  <Button variant="secondary" onClick={act(() => removeFriend(p.id))} aria-label={`Remove ${p.display_name}`}>Remove</Button>
                </PersonRow>
              ))}
            </ul>
          </section>
          <section aria-labelledby="out-h">
            <h2 id="out-h" className="mb-2 font-semibold">Sent requests ({outgoing.length})</h2>
            <ul className="flex flex-col gap-2">
              {outgoing.map((r) => (
                <PersonRow key={r.id} p={r.profile}>
                  <Button variant="secondary" onClick={act(() => declineRequest(r.id))} aria-label={`Cancel request to ${r.profile.display_name}`}>Cancel</Button>
                </PersonRow>
              ))}
            </ul>
          </section>
          {data.blocked.length > 0 && (
            <section aria-labelledby="b-h">
              <h2 id="b-h" className="mb-2 font-semibold">Blocked</h2>
              <ul className="flex flex-col gap-2">
                {data.blocked.map((p) => (
                  <PersonRow key={p.id} p={p}>
                    <Button variant="secondary" onClick={act(() => unblock(p.id))} aria-label={`Unblock ${p.display_name}`}>Unblock</Button>
                  </PersonRow>
                ))}
              </ul>
            </section>
          )}
        </>
      )}
    </div>
  );
}

export default function FriendsPage() {
  return (
    <Suspense>
      <AppShell title="Friends">
        <Friends />
      </AppShell>
    </Suspense>
  );
}
