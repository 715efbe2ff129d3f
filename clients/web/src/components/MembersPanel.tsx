"use client";
import Link from "next/link";
import { useCallback, useEffect, useId, useState } from "react";
import { errorText } from "@/lib/api";
import { canAddMembers, canChangeRole, canRemove, sortMembers } from "@/lib/roles";
import { addMember, displayName, fetchMembers, removeMember, setMemberRole, useChat } from "@/lib/store";
import type { Member, Room } from "@/lib/types";
import { UserSearch } from "./UserSearch";
import { Alert, Avatar, Button, Spinner } from "./ui";

const ROLE_LABEL = { owner: "Owner", admin: "Admin", member: "Member" } as const;

/** A room's members with roles and presence; owners and admins manage them here. */
export function MembersPanel({ room, onClose }: { room: Room; onClose: () => void }) {
  const me = useChat((s) => s.me);
  const profiles = useChat((s) => s.profiles);
  const presence = useChat((s) => s.presence);
  const [members, setMembers] = useState<Member[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const headingId = useId();

  const reload = useCallback(() => {
    fetchMembers(room.id)
      .then((m) => {
        setMembers(m);
        setError(null);
      })
      .catch((e: unknown) => setError(errorText(e)));
  }, [room.id]);

  // again whenever someone joins or leaves (the room's member count moves)
  useEffect(reload, [reload, room.member_count]);

  if (!me) return null;
  const nameOf = (id: string) => (id === me.id ? me.display_name || me.username : displayName(id));
  const mine = members?.find((m) => m.user_id === me.id)?.role ?? null;
  const act = async (key: string, f: () => Promise<void>) => {
    setBusy(key);
    setError(null);
    try {
      await f();
      reload();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(null);
    }
  };
  const memberIds = new Set(members?.map((m) => m.user_id));

  return (
    <aside
      aria-labelledby={headingId}
      className="absolute inset-0 z-30 flex flex-col overflow-y-auto bg-white p-3 md:static md:w-80 md:shrink-0 md:border-l md:border-gray-200 dark:bg-gray-950 md:dark:border-gray-800"
    >
      <div className="mb-2 flex items-center gap-2">
        <h2 id={headingId} className="flex-1 font-semibold">
          Members{members ? ` (${members.length})` : ""}
        </h2>
        <Button variant="ghost" onClick={onClose} aria-label="Close members">
          <span aria-hidden="true">✕</span>
        </Button>
      </div>
      {error && <Alert>{error}</Alert>}
      {!members && !error && <Spinner label="Loading members…" />}
      <ul className="flex flex-col gap-1" aria-label="Members">
        {members &&
          sortMembers(members, nameOf).map((m) => {
            const name = nameOf(m.user_id);
            const status = presence[m.user_id] ?? (m.user_id === me.id ? "online" : "offline");
            return (
              <li key={m.user_id} data-member-id={m.user_id} className="flex items-center gap-2 rounded-md px-1 py-1.5">
                <Avatar name={name} src={profiles[m.user_id]?.avatar_url} size={32} presence={status} />
                <div className="min-w-0 flex-1">
                  <Link href={`/user?id=${encodeURIComponent(m.user_id)}`} className="block truncate text-sm font-medium hover:underline">
                    {name}
                    {m.user_id === me.id && " (you)"}
                  </Link>
                  <p className="truncate text-xs text-gray-700 dark:text-gray-300">
                    {room.type !== "direct" && <span className="font-medium">{ROLE_LABEL[m.role]}</span>}
                    {room.type !== "direct" && " · "}
                    {status}
                  </p>
                </div>
                {room.type !== "direct" && canChangeRole(mine, m) && (
                  <select
                    aria-label={`Role of ${name}`}
                    value={m.role}
                    disabled={busy !== null}
                    onChange={(e) => void act(`role-${m.user_id}`, () => setMemberRole(room.id, m.user_id, e.target.value === "admin" ? "admin" : "member"))}
                    className="rounded-md border border-gray-300 bg-white px-1 py-1 text-xs dark:border-gray-600 dark:bg-gray-900"
                  >
                    <option value="member">Member</option>
                    <option value="admin">Admin</option>
                  </select>
                )}
                {room.type !== "direct" && canRemove(mine, m, me.id) && (
                  <Button
                    variant="ghost"
                    className="px-2 text-xs"
                    disabled={busy !== null}
                    aria-label={`Remove ${name}`}
                    onClick={() => {
                      if (window.confirm(`Remove ${name} from #${room.name}?`)) void act(`remove-${m.user_id}`, () => removeMember(room.id, m.user_id));
                    }}
                  >
                    Remove
                  </Button>
                )}
              </li>
            );
          })}
      </ul>
      {members && canAddMembers(room, mine) && (
        <div className="mt-4 border-t border-gray-200 pt-3 dark:border-gray-800">
          <UserSearch
            label="Add people"
            exclude={memberIds}
            action={(p) => ({
              label: "Add",
              ariaLabel: `Add ${p.display_name} to the room`,
              disabled: busy !== null,
              run: () => void act(`add-${p.id}`, () => addMember(room.id, p.id)),
            })}
          />
        </div>
      )}
    </aside>
  );
}
