"use client";
import Link from "next/link";
import { useSearchParams, usePathname } from "next/navigation";
import { sortedRooms } from "@/lib/chatState";
import { displayName, roomTitle, useChat } from "@/lib/store";
import type { Room } from "@/lib/types";
import { Avatar } from "./ui";

export function RoomList() {
  const s = useChat((x) => x);
  const rooms = sortedRooms(s);
  const groups = rooms.filter((r) => r.type !== "direct");
  const dms = rooms.filter((r) => r.type === "direct");
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <div className="flex items-center justify-between gap-2 p-3">
        <h2 className="text-sm font-semibold uppercase tracking-wide text-gray-700 dark:text-gray-300">Rooms</h2>
        <Link href="/browse" className="rounded-md border border-gray-300 px-2 py-1 text-xs font-medium text-gray-800 hover:bg-white dark:border-gray-600 dark:text-gray-200 dark:hover:bg-gray-800">
          Browse &amp; create
        </Link>
      </div>
      <div className="min-h-0 flex-1 overflow-y-auto pb-4">
        <Section rooms={groups} empty={s.roomsLoaded ? "You are not in any room yet." : "Loading rooms…"} />
        <div className="flex items-center justify-between gap-2 px-3 pb-1 pt-4">
          <h2 className="text-sm font-semibold uppercase tracking-wide text-gray-700 dark:text-gray-300">Direct messages</h2>
          <Link href="/new-message" className="rounded-md border border-gray-300 px-2 py-1 text-xs font-medium text-gray-800 hover:bg-white dark:border-gray-600 dark:text-gray-200 dark:hover:bg-gray-800">
            New message
          </Link>
        </div>
        <Section rooms={dms} empty="Start a DM or a group DM with New message." />
      </div>
    </div>
  );
}

function Section({ rooms, empty }: { rooms: Room[]; empty: string }) {
  const params = useSearchParams();
  const pathname = usePathname();
  const active = pathname === "/room" ? params.get("id") : null;
  const s = useChat((x) => x);
  if (rooms.length === 0) return <p className="px-3 text-sm text-gray-600 dark:text-gray-400">{empty}</p>;
  return (
    <ul>
      {rooms.map((r) => {
        const title = roomTitle(r, s);
        const last = r.last_message;
        const preview = last ? (last.deleted_at ? "Message deleted" : `${displayName(last.sender_id)}: ${last.body}`) : r.topic || "No messages yet";
        const other = r.type === "direct" ? r.member_ids.find((id) => id !== s.me?.id) : undefined;
        return (
          <li key={r.id}>
            <Link
              href={`/room?id=${encodeURIComponent(r.id)}`}
              aria-current={active === r.id ? "page" : undefined}
              className={`mx-2 flex items-center gap-2 rounded-md px-2 py-2 ${active === r.id ? "bg-indigo-100 dark:bg-indigo-950" : "hover:bg-gray-100 dark:hover:bg-gray-800"}`}
            >
              {r.type === "direct" ? (
                <Avatar
                  name={title}
                  src={other && r.member_ids.length <= 2 ? s.profiles[other]?.avatar_url : undefined}
                  size={32}
                  presence={other && r.member_ids.length <= 2 ? (s.presence[other] ?? "offline") : undefined}
                />
              ) : (
                <span aria-hidden="true" className="inline-flex h-8 w-8 shrink-0 items-center justify-center rounded-md bg-gray-200 font-semibold text-gray-700 dark:bg-gray-700 dark:text-gray-200">
                  #
                </span>
              )}
              <span className="min-w-0 flex-1">
                <span className={`block truncate text-sm ${r.unread_count > 0 ? "font-bold" : "font-medium"}`}>{title}</span>
                <span className="block truncate text-xs text-gray-600 dark:text-gray-400">{preview}</span>
              </span>
              {r.unread_count > 0 && (
                <span className="rounded-full bg-indigo-600 px-2 py-0.5 text-xs font-semibold text-white" aria-label={`${r.unread_count} unread`}>
                  {r.unread_count > 99 ? "99+" : r.unread_count}
                </span>
              )}
            </Link>
          </li>
        );
      })}
    </ul>
  );
}
