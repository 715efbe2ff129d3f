// The client's chat state and the pure reducer that applies server frames and local
// actions to it. The store (store.ts) wires it to the socket, the REST API and React.
import { advance, seed, type Cursors } from "./cursors";
import { normalizeMessage, normalizeReaction, normalizeRoom } from "./normalize";
import {
  addPending,
  applyDeleted,
  applyReactions,
  discardLocal,
  latestSeq,
  markFailed,
  markRetrying,
  mergeMessages,
  toggleReaction,
  type Draft,
} from "./timeline";
import type { Message, Presence, Reaction, Room, TimelineMessage, User } from "./types";

export type ConnectionStatus = "idle" | "connecting" | "open" | "reconnecting" | "unavailable" | "offline";

export interface RoomTimeline {
  messages: TimelineMessage[];
  /** The latest page has been loaded from the API. */
  loaded: boolean;
  /** There is older history to load. */
  hasMore: boolean;
}

export interface ChatState {
  me: User | null;
  rooms: Readonly<Record<string, Room>>;
  timelines: Readonly<Record<string, RoomTimeline>>;
  cursors: Cursors;
  /** room → user → until (ms since epoch) */
  typing: Readonly<Record<string, Readonly<Record<string, number>>>>;
  /** room → user → last read seq (read receipts) */
  reads: Readonly<Record<string, Readonly<Record<string, number>>>>;
  presence: Readonly<Record<string, Presence>>;
  status: ConnectionStatus;
  activeRoom: string | null;
}

export const initialState: ChatState = {
  me: null,
  rooms: {},
  timelines: {},
  cursors: {},
  typing: {},
  reads: {},
  presence: {},
  status: "idle",
  activeRoom: null,
};

export const TYPING_TTL_MS = 6000;

const emptyTimeline: RoomTimeline = { messages: [], loaded: false, hasMore: true };

type Frame = Record<string, unknown> & { type?: unknown };

function withTimeline(s: ChatState, roomId: string, f: (t: RoomTimeline) => RoomTimeline): ChatState {
  const current = s.timelines[roomId] ?? emptyTimeline;
  const next = f(current);
  return next === current ? s : { ...s, timelines: { ...s.timelines, [roomId]: next } };
}

function mergeIntoRoom(s: ChatState, m: Message, opts: { countUnread: boolean }): ChatState {
  const room = s.rooms[m.room_id];
  if (!room) return s;
  const isNewer = !room.last_message || m.seq >= room.last_message.seq;
  const fromOther = s.me !== null && m.sender_id !== s.me.id;
  const unseen = opts.countUnread && fromOther && m.seq > room.last_read_seq && m.seq > room.last_seq && s.activeRoom !== m.room_id;
  const next: Room = {
    ...room,
    last_message: isNewer ? m : room.last_message,
    last_seq: Math.max(room.last_seq, m.seq),
    unread_count: room.unread_count + (unseen ? 1 : 0),
  };
  return { ...s, rooms: { ...s.rooms, [m.room_id]: next } };
}

/** Apply messages (from a frame or a history page) to timeline, room summary, cursor. */
function applyMessages(s: ChatState, msgs: Message[], opts: { countUnread: boolean; cursor: boolean }): ChatState {
  let next = s;
  for (const m of msgs) {
    next = mergeIntoRoom(next, m, opts);
    if (opts.cursor) next = { ...next, cursors: advance(next.cursors, m.room_id, m.seq) };
    next = withTimeline(next, m.room_id, (t) => ({ ...t, messages: mergeMessages(t.messages, [m]) }));
    // a message from someone clears their typing indicator
    const typers = next.typing[m.room_id];
    if (typers && m.sender_id in typers) {
      const rest = { ...typers };
      delete rest[m.sender_id];
      next = { ...next, typing: { ...next.typing, [m.room_id]: rest } };
    }
  }
  return next;
}

export function upsertRoom(s: ChatState, room: Room, opts: { seedCursor: boolean }): ChatState {
  const prev = s.rooms[room.id];
  const merged: Room = prev
    ? {
        ...prev,
        ...room,
        // a room event carries no per-user data: keep ours
        last_message: room.last_message ?? prev.last_message,
        unread_count: room.last_message || room.unread_count ? room.unread_count : prev.unread_count,
        last_read_seq: Math.max(prev.last_read_seq, room.last_read_seq),
        last_seq: Math.max(prev.last_seq, room.last_seq),
        // room events carry no membership: an absent role is "unchanged", not "none"
        role: room.role ?? prev.role,
        is_member: room.is_member ?? prev.is_member,
      }
    : room;
  return {
    ...s,
    rooms: { ...s.rooms, [room.id]: merged },
    cursors: opts.seedCursor ? seed(s.cursors, room.id, room.last_seq) : s.cursors,
  };
}

/** The room a frame is about, if any. */
function frameRoom(frame: Frame): string | null {
  if (typeof frame.room_id === "string") return frame.room_id;
  const m = frame.message as { room_id?: unknown } | undefined;
  if (m && typeof m.room_id === "string") return m.room_id;
  const r = frame.room as { id?: unknown } | undefined;
  if (r && typeof r.id === "string") return r.id;
  return null;
}

/** Apply a server frame. Frames built from a room event carry `event_seq` (the room
 * log's seq): that is what the resume cursor follows. */
export function applyFrame(s: ChatState, frame: Frame, now: number): ChatState {
  const next = applyFrameBody(s, frame, now);
  const eventSeq = typeof frame.event_seq === "number" ? frame.event_seq : undefined;
  const roomId = eventSeq !== undefined ? frameRoom(frame) : null;
  if (roomId === null || !(roomId in next.rooms)) return next;
  return { ...next, cursors: advance(next.cursors, roomId, eventSeq) };
}

function applyFrameBody(s: ChatState, frame: Frame, now: number): ChatState {
  switch (frame.type) {
    case "ready": {
      // `ready`'s user is a subset of /me's: merge, never replace
      const user = frame.user as Partial<User> | undefined;
      const me = s.me && user ? { ...s.me, ...user } : s.me;
      let next: ChatState = { ...s, me, status: "open" };
      const rooms = Array.isArray(frame.rooms) ? frame.rooms : [];
      for (const raw of rooms) {
        const room = normalizeRoom(raw);
        if (room) next = upsertRoom(next, room, { seedCursor: true });
      }
      return next;
    }
    case "message.created":
    case "message.ack": {
      const m = normalizeMessage(frame.message);
      if (!m) return s;
      // An ack can overtake broadcasts of lower seqs still in flight: only broadcasts
      // move the resume cursor.
      return applyMessages(s, [m], { countUnread: frame.type === "message.created", cursor: frame.type === "message.created" });
    }
    case "message.updated": {
      const m = normalizeMessage(frame.message);
      if (!m) return s;
      let next = withTimeline(s, m.room_id, (t) => ({ ...t, messages: mergeMessages(t.messages, [m]) }));
      const room = next.rooms[m.room_id];
      if (room?.last_message?.id === m.id) next = { ...next, rooms: { ...next.rooms, [m.room_id]: { ...room, last_message: m } } };
      return next;
    }
    case "message.deleted": {
      const roomId = typeof frame.room_id === "string" ? frame.room_id : "";
      const id = typeof frame.message_id === "string" ? frame.message_id : "";
      if (!roomId || !id) return s;
      let next = withTimeline(s, roomId, (t) => ({ ...t, messages: applyDeleted(t.messages, id) }));
      const room = next.rooms[roomId];
      if (room?.last_message?.id === id) {
        next = { ...next, rooms: { ...next.rooms, [roomId]: { ...room, last_message: { ...room.last_message, body: "", deleted_at: "deleted" } } } };
      }
      return next;
    }
    case "reaction.updated": {
      const m = normalizeMessage(frame.message);
      if (m) {
        const next = withTimeline(s, m.room_id, (t) => ({ ...t, messages: mergeMessages(t.messages, [m]) }));
        return next;
      }
      const roomId = typeof frame.room_id === "string" ? frame.room_id : "";
      const id = typeof frame.message_id === "string" ? frame.message_id : "";
      if (!roomId || !id || !Array.isArray(frame.reactions)) return s;
      const reactions = frame.reactions.map(normalizeReaction).filter((r): r is Reaction => r !== null);
      const next = withTimeline(s, roomId, (t) => ({ ...t, messages: applyReactions(t.messages, id, reactions) }));
      return next;
    }
    case "typing": {
      const roomId = typeof frame.room_id === "string" ? frame.room_id : "";
      const userId = typeof frame.user_id === "string" ? frame.user_id : "";
      if (!roomId || !userId || userId === s.me?.id) return s;
      return { ...s, typing: { ...s.typing, [roomId]: { ...s.typing[roomId], [userId]: now + TYPING_TTL_MS } } };
    }
    case "read": {
      const roomId = typeof frame.room_id === "string" ? frame.room_id : "";
      const userId = typeof frame.user_id === "string" ? frame.user_id : "";
      const seq = typeof frame.seq === "number" ? frame.seq : 0;
      if (!roomId || !userId) return s;
      const prev = s.reads[roomId]?.[userId] ?? 0;
      let next: ChatState = seq > prev ? { ...s, reads: { ...s.reads, [roomId]: { ...s.reads[roomId], [userId]: seq } } } : s;
      const room = next.rooms[roomId];
      if (userId === s.me?.id && room && seq >= room.last_read_seq) {
        next = { ...next, rooms: { ...next.rooms, [roomId]: { ...room, last_read_seq: seq, unread_count: seq >= room.last_seq ? 0 : room.unread_count } } };
      }
      return next;
    }
    case "presence": {
      const userId = typeof frame.user_id === "string" ? frame.user_id : "";
      const status = frame.status === "online" || frame.status === "away" ? frame.status : "offline";
      return userId ? { ...s, presence: { ...s.presence, [userId]: status } } : s;
    }
    case "room.updated": {
      const room = normalizeRoom(frame.room);
      if (!room) return s;
      const member = frame.member as { user_id?: unknown; change?: unknown } | undefined;
      const gone = member && member.user_id === s.me?.id && (member.change === "left" || member.change === "removed");
      if (gone || frame.removed === true) return removeRoom(s, room.id);
      const mine = member && member.user_id === s.me?.id && typeof (member as { role?: unknown }).role === "string";
      return upsertRoom(s, mine ? { ...room, role: (member as { role: string }).role } : room, { seedCursor: true });
    }
    default:
      return s;
  }
}

export function removeRoom(s: ChatState, roomId: string): ChatState {
  const rooms = { ...s.rooms };
  delete rooms[roomId];
  const cursors = { ...s.cursors };
  delete cursors[roomId];
  return { ...s, rooms, cursors };
}

/** The latest history page replaces whatever partial live tail we held: anything older
 * than the page would leave a gap, so it is dropped (scrolling up reloads it). */
export function applyLatestPage(s: ChatState, roomId: string, page: Message[], hasMore: boolean): ChatState {
  const min = page.reduce((acc, m) => Math.min(acc, m.seq), Number.POSITIVE_INFINITY);
  let next = withTimeline(s, roomId, (t) => ({
    loaded: true,
    hasMore,
    messages: mergeMessages(
      t.messages.filter((m) => m.seq === 0 || m.seq >= min || page.length === 0),
      page,
    ),
  }));
  const tl = next.timelines[roomId];
  if (tl) next = { ...next, cursors: advance(next.cursors, roomId, latestSeq(tl.messages)) };
  return next;
}

export function applyOlderPage(s: ChatState, roomId: string, page: Message[], hasMore: boolean): ChatState {
  return withTimeline(s, roomId, (t) => ({ ...t, hasMore, messages: mergeMessages(t.messages, page) }));
}

export function addLocal(s: ChatState, d: Draft): ChatState {
  return withTimeline(s, d.room_id, (t) => ({ ...t, messages: addPending(t.messages, d) }));
}

export function failLocal(s: ChatState, roomId: string, clientMsgId: string): ChatState {
  return withTimeline(s, roomId, (t) => ({ ...t, messages: markFailed(t.messages, clientMsgId) }));
}

export function retryLocal(s: ChatState, roomId: string, clientMsgId: string): ChatState {
  return withTimeline(s, roomId, (t) => ({ ...t, messages: markRetrying(t.messages, clientMsgId) }));
}

export function dropLocal(s: ChatState, roomId: string, clientMsgId: string): ChatState {
  return withTimeline(s, roomId, (t) => ({ ...t, messages: discardLocal(t.messages, clientMsgId) }));
}

export function toggleLocalReaction(s: ChatState, roomId: string, messageId: string, emoji: string): ChatState {
  if (!s.me) return s;
  const me = s.me.id;
  return withTimeline(s, roomId, (t) => ({ ...t, messages: toggleReaction(t.messages, messageId, emoji, me) }));
}

export function markRoomRead(s: ChatState, roomId: string, seq: number): ChatState {
  const room = s.rooms[roomId];
  if (!room) return s;
  return { ...s, rooms: { ...s.rooms, [roomId]: { ...room, unread_count: 0, last_read_seq: Math.max(room.last_read_seq, seq) } } };
}

export function typingUsers(s: ChatState, roomId: string, now: number): string[] {
  const t = s.typing[roomId];
  return t ? Object.entries(t).filter(([, until]) => until > now).map(([u]) => u) : [];
}

export function sortedRooms(s: ChatState): Room[] {
  return Object.values(s.rooms).sort((a, b) => {
    const at = a.last_message?.created_at ?? "";
    const bt = b.last_message?.created_at ?? "";
    if (at !== bt) return at < bt ? 1 : -1;
    return a.name.localeCompare(b.name);
  });
}
