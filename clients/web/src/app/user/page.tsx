"use client";
import { useSearchParams } from "next/navigation";
import { Suspense, useCallback, useEffect, useState } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, Avatar, Button, Spinner } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { normalizeProfile } from "@/lib/normalize";
import { acceptRequest, block, declineRequest, removeFriend, sendFriendRequest, unblock, useStartDm } from "@/lib/people";
import { rememberProfiles, useChat } from "@/lib/store";
import type { Profile } from "@/lib/types";

function UserProfile() {
  const id = useSearchParams().get("id") ?? "";
  const [p, setP] = useState<Profile | null>(null);
  const [error, setError] = useState<string | null>(null);
  const presence = useChat((s) => s.presence[id]);
  const startDm = useStartDm();

  const load = useCallback(() => {
    if (!id) return;
    api
      .get<unknown>(`/api/v1/users/${encodeURIComponent(id)}`)
      .then((d) => {
        const profile = normalizeProfile(d);
        if (profile) rememberProfiles([profile]);
        setP(profile);
      })
      .catch((e: unknown) => setError(errorText(e)));
  }, [id]);
  useEffect(load, [load]);

  const act = (f: () => Promise<unknown>) => () => {
    setError(null);
    f().then(load).catch((e: unknown) => setError(errorText(e)));
  };

  if (!id) return <div className="p-4"><Alert>No user selected.</Alert></div>;
  return (
    <div className="mx-auto w-full max-w-2xl overflow-y-auto p-4">
      {error && <Alert>{error}</Alert>}
      {!p && !error && <Spinner />}
      {p && (
        <article className="flex flex-col gap-4">
          <div className="flex items-center gap-4">
            <Avatar name={p.display_name} src={p.avatar_url} size={72} presence={presence ?? "offline"} />
            <div className="min-w-0">
              <h1 className="truncate text-2xl font-semibold">{p.display_name}</h1>
              <p className="text-gray-700 dark:text-gray-300">@{p.username} · {presence ?? "offline"}</p>
              {p.status_text && <p>{p.status_emoji} {p.status_text}</p>}
            </div>
          </div>
          {p.bio && <p className="msg-body">{p.bio}</p>}
          {p.time_zone && <p className="text-sm text-gray-700 dark:text-gray-300">Time zone: {p.time_zone}</p>}
          {p.relationship !== "self" && (
            <div className="flex flex-wrap gap-2">
              {p.relationship !== "blocked" && <Button onClick={act(() => startDm(p.id))}>Message</Button>}
              {(p.relationship === "none" || p.relationship === undefined) && <Button variant="secondary" onClick={act(() => sendFriendRequest(p.id))}>Add friend</Button>}
              {p.relationship === "request_sent" && <span className="self-center text-sm text-gray-700 dark:text-gray-300">Friend request sent</span>}
              {p.relationship === "request_received" && p.friend_request_id && (
                <>
                  <Button onClick={act(() => acceptRequest(p.friend_request_id!))}>Accept friend request</Button>
                  <Button variant="secondary" onClick={act(() => declineRequest(p.friend_request_id!))}>Decline</Button>
                </>
              )}
              {p.relationship === "friend" && <Button variant="secondary" onClick={act(() => removeFriend(p.id))}>Remove friend</Button>}
              {p.relationship === "blocked" ? (
                <Button variant="secondary" onClick={act(() => unblock(p.id))}>Unblock</Button>
              ) : (
                <Button variant="danger" onClick={act(() => (window.confirm(`Block ${p.display_name}?`) ? block(p.id) : Promise.resolve()))}>Block</Button>
              )}
            </div>
          )}
        </article>
      )}
    </div>
  );
}

export default function UserPage() {
  return (
    <Suspense>
      <AppShell title="Profile">
        <UserProfile />
      </AppShell>
    </Suspense>
  );
}
