"use client";
// People actions shared by the profile, search and friends pages.
import { useRouter } from "next/navigation";
import { api } from "./api";
import { upsertRoomFromApi } from "./store";

export async function startDm(userIds: string[]): Promise<string | null> {
  const d = await api.post<unknown>("/api/v1/dms", { user_ids: userIds });
  const room = upsertRoomFromApi((d as { room?: unknown } | null)?.room ?? d);
  return room?.id ?? null;
}

export function useStartDm() {
  const router = useRouter();
  return async (userId: string) => {
    const id = await startDm([userId]);
    if (id) router.push(`/room?id=${encodeURIComponent(id)}`);
  };
}

export const sendFriendRequest = (userId: string) => api.post("/api/v1/friends/requests", { user_id: userId });
export const acceptRequest = (id: string) => api.post(`/api/v1/friends/requests/${encodeURIComponent(id)}/accept`);
export const declineRequest = (id: string) => api.post(`/api/v1/friends/requests/${encodeURIComponent(id)}/decline`);
export const removeFriend = (userId: string) => api.del(`/api/v1/friends/${encodeURIComponent(userId)}`);
export const block = (userId: string) => api.post("/api/v1/blocks", { user_id: userId });
export const unblock = (userId: string) => api.del(`/api/v1/blocks/${encodeURIComponent(userId)}`);
