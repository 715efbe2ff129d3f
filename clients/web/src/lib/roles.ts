// Who may do what to a room's members: the chat service's rules, mirrored so the UI
// only offers what will succeed (the service still decides).
import type { Member, MemberRole, Room } from "./types";

const MANAGERS: ReadonlySet<MemberRole> = new Set(["owner", "admin"]);

/** Adding people: anyone in a public room, owners and admins in a private one; a DM's
 * set of people is fixed (a different set is a different DM). */
export function canAddMembers(room: Pick<Room, "type" | "visibility">, myRole: MemberRole | null): boolean {
  if (room.type === "direct" || myRole === null) return false;
  return room.visibility === "public" || MANAGERS.has(myRole);
}

/** Owners and admins remove members; only the owner removes admins; nobody removes the
 * owner, and leaving is not removing yourself. */
export function canRemove(myRole: MemberRole | null, target: Member, myId: string): boolean {
  if (myRole === null || !MANAGERS.has(myRole) || target.user_id === myId || target.role === "owner") return false;
  return target.role !== "admin" || myRole === "owner";
}

/** Only the owner promotes and demotes, and the owner's own role never changes. */
export function canChangeRole(myRole: MemberRole | null, target: Member): boolean {
  return myRole === "owner" && target.role !== "owner";
}

const RANK: Record<MemberRole, number> = { owner: 0, admin: 1, member: 2 };

/** Owner first, then admins, then members; by name within a role. */
export function sortMembers(members: Member[], nameOf: (id: string) => string): Member[] {
  return [...members].sort((a, b) => RANK[a.role] - RANK[b.role] || nameOf(a.user_id).localeCompare(nameOf(b.user_id)));
}

/** The most people a group DM holds besides you (the chat service's limit). */
export const MAX_DM_OTHERS = 15;

/** Toggle a user in a multi-select, keeping the order they were picked in. */
export function toggleSelected(selected: string[], id: string, max = MAX_DM_OTHERS): string[] {
  if (selected.includes(id)) return selected.filter((x) => x !== id);
  return selected.length >= max ? selected : [...selected, id];
}
