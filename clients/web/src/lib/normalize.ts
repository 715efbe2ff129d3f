// Turn API JSON into the client's types, tolerating the spellings the BFF may use
// (proto-style enum names, nested membership, timestamps named *_time).
import type { FriendRequest, Member, MemberRole, Message, Profile, PublicRoomPage, Reaction, Relationship, Room } from "./types";

type Json = Record<string, unknown>;

const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const str = (v: unknown, d = ""): string => (typeof v === "string" ? v : typeof v === "number" ? String(v) : d);
const num = (v: unknown, d = 0): number => {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return d;
};
const optStr = (v: unknown): string | null => (typeof v === "string" && v !== "" ? v : null);

function enumName(v: unknown, prefix: string): string {
  const s = str(v).toLowerCase();
  const p = prefix.toLowerCase();
  return s.startsWith(p) ? s.slice(p.length) : s;
}

/** Lists come either bare or wrapped (`{rooms: [...]}`, `{items: [...]}`, ...). */
export function listOf(data: unknown, ...keys: string[]): unknown[] {
  if (Array.isArray(data)) return data;
  if (isObj(data)) {
    for (const k of [...keys, "items", "results", "data"]) {
      const v = data[k];
      if (Array.isArray(v)) return v;
    }
  }
  return [];
}

export function normalizeReaction(r: unknown): Reaction | null {
  if (!isObj(r)) return null;
  const user_ids = Array.isArray(r.user_ids) ? r.user_ids.map((u) => str(u)) : [];
  return { emoji: str(r.emoji), count: num(r.count, user_ids.length), user_ids };
}

export function normalizeMessage(m: unknown): Message | null {
  if (!isObj(m) || !str(m.id) || !str(m.room_id)) return null;
  const reactions = Array.isArray(m.reactions)
    ? m.reactions.map(normalizeReaction).filter((r): r is Reaction => r !== null && r.count > 0)
    : [];
  return {
    id: str(m.id),
    room_id: str(m.room_id),
    seq: num(m.seq),
    sender_id: str(m.sender_id),
    body: str(m.body),
    client_msg_id: str(m.client_msg_id),
    reply_to: optStr(m.reply_to),
    created_at: str(m.created_at ?? m.create_time, new Date(0).toISOString()),
    edited_at: optStr(m.edited_at ?? m.edit_time),
    // The BFF's message object has no delete field: a tombstone is the message with an
    // empty body (a real body is never blank).
    deleted_at: optStr(m.deleted_at ?? m.delete_time) ?? (m.deleted === true || str(m.body) === "" ? "deleted" : null),
    reactions,
    mention_user_ids: Array.isArray(m.mention_user_ids) ? m.mention_user_ids.map((u) => str(u)) : [],
  };
}

export function normalizeRoom(r: unknown): Room | null {
  if (!isObj(r) || !str(r.id)) return null;
  const membership = isObj(r.membership) ? r.membership : {};
  const type = enumName(r.type ?? r.kind, "room_type_");
  const visibility = enumName(r.visibility, "visibility_");
  return {
    id: str(r.id),
    type: type === "direct" || type === "dm" || type === "group_dm" ? "direct" : "group",
    visibility: visibility === "public" ? "public" : "private",
    name: str(r.name),
    topic: str(r.topic),
    last_seq: num(r.last_seq),
    member_count: num(r.member_count),
    member_ids: Array.isArray(r.member_ids) ? r.member_ids.map((u) => str(u)) : [],
    last_message: normalizeMessage(r.last_message),
    unread_count: num(r.unread_count ?? membership.unread_count),
    last_read_seq: num(r.last_read_seq ?? membership.last_read_seq),
    role: optStr(r.role ?? membership.role) ?? undefined,
    is_member: typeof r.is_member === "boolean" ? r.is_member : "membership" in r ? isObj(r.membership) : undefined,
  };
}

const RELATIONSHIPS: Relationship[] = ["none", "self", "friend", "request_sent", "request_received", "blocked"];

export function normalizeProfile(p: unknown): Profile | null {
  if (!isObj(p)) return null;
  // a profile, or {profile|user: profile, relationship, …} (friends and blocks lists)
  const wrapped = isObj(p.profile) ? p.profile : isObj(p.user) ? p.user : null;
  const inner: Json = wrapped ? { ...wrapped, ...p } : p;
  const id = str(inner.id ?? inner.user_id);
  if (!id) return null;
  const rel = enumName(inner.relationship, "relationship_") as Relationship;
  return {
    id,
    username: str(inner.username),
    display_name: str(inner.display_name) || str(inner.username),
    bio: str(inner.bio),
    avatar_url: str(inner.avatar_url),
    status_text: str(inner.status_text),
    status_emoji: str(inner.status_emoji),
    time_zone: str(inner.time_zone),
    relationship: RELATIONSHIPS.includes(rel) ? rel : undefined,
    friend_request_id: optStr(inner.friend_request_id) ?? undefined,
  };
}

export function normalizeFriendRequest(r: unknown): FriendRequest | null {
  if (!isObj(r)) return null;
  const profile = normalizeProfile(r.profile ?? r.user);
  if (!profile || !str(r.id)) return null;
  const dir = enumName(r.direction, "friend_request_direction_");
  return { id: str(r.id), direction: dir === "outgoing" ? "outgoing" : "incoming", profile };
}

const ROLES: MemberRole[] = ["owner", "admin", "member"];

export function normalizeMember(m: unknown): Member | null {
  if (!isObj(m) || !str(m.user_id)) return null;
  const role = enumName(m.role, "member_role_") as MemberRole;
  return { user_id: str(m.user_id), username: str(m.username), role: ROLES.includes(role) ? role : "member", last_read_seq: num(m.last_read_seq) };
}

/** `GET /api/v1/rooms/public`: `{rooms: [{room, is_member}], next_cursor}`. */
export function normalizePublicRooms(data: unknown): PublicRoomPage {
  const rooms: Room[] = [];
  for (const entry of listOf(data, "rooms")) {
    if (!isObj(entry)) continue;
    const room = normalizeRoom(entry.room ?? entry);
    if (room) rooms.push({ ...room, is_member: entry.is_member === true });
  }
  const cursor = isObj(data) ? optStr(data.next_cursor) : null;
  return { rooms, next_cursor: cursor };
}
