"use client";
import Link from "next/link";
import type { ReactNode } from "react";
import { useChat } from "@/lib/store";
import type { Profile } from "@/lib/types";
import { Avatar } from "./ui";

export function PersonRow({ p, children }: { p: Profile; children?: ReactNode }) {
  const presence = useChat((s) => s.presence[p.id]);
  return (
    <li className="flex items-center gap-3 rounded-lg border border-gray-200 p-3 dark:border-gray-800">
      <Avatar name={p.display_name || p.username} src={p.avatar_url} presence={presence ?? "offline"} />
      <div className="min-w-0 flex-1">
        <Link href={`/user?id=${encodeURIComponent(p.id)}`} className="block truncate font-medium hover:underline">
          {p.display_name}
        </Link>
        <p className="truncate text-sm text-gray-700 dark:text-gray-300">
          @{p.username}
          {presence && <span className="sr-only">, {presence}</span>}
          {p.status_text && ` · ${p.status_emoji ?? ""} ${p.status_text}`}
        </p>
      </div>
      <div className="flex flex-wrap justify-end gap-2">{children}</div>
    </li>
  );
}
