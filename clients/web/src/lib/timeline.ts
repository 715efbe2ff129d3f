// A room's local timeline: server messages ordered by seq, then our own messages
// still in flight (pending or failed) in the order we sent them. Pure functions,
// no React: every change returns a new array.
import type { Message, Reaction, TimelineMessage } from "./types";

export const LOCAL_PREFIX = "local:";

export const isLocal = (m: { id: string }): boolean => m.id.startsWith(LOCAL_PREFIX);

function compare(a: TimelineMessage, b: TimelineMessage): number {
  const al = isLocal(a);
  const bl = isLocal(b);
  if (al !== bl) return al ? 1 : -1; // in-flight messages go last
  if (al && bl) return a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0;
  return a.seq - b.seq;
}

/** Which of two versions of the same message to keep. A tombstone always wins; otherwise
 * the incoming copy (it came later), unless it is an older edit than the one we hold. */
function pick(current: TimelineMessage, incoming: TimelineMessage): TimelineMessage {
  if (current.deleted_at && !incoming.deleted_at) return current;
  if (current.edited_at && incoming.edited_at && incoming.edited_at < current.edited_at && !incoming.deleted_at) {
    return current;
  }
  return incoming;
}

/** Merge server messages into the timeline: dedup by id, replace the local copy of a
 * message we sent (matched by client_msg_id), keep the order by seq. */
export function mergeMessages(timeline: readonly TimelineMessage[], incoming: readonly Message[]): TimelineMessage[] {
  if (incoming.length === 0) return timeline as TimelineMessage[];
  const byId = new Map<string, TimelineMessage>();
  const localByClientId = new Map<string, string>();
  for (const m of timeline) {
    byId.set(m.id, m);
    if (isLocal(m) && m.client_msg_id) localByClientId.set(m.client_msg_id, m.id);
  }
  for (const raw of incoming) {
    const m: TimelineMessage = { ...raw, state: "sent" };
    const localId = m.client_msg_id ? localByClientId.get(m.client_msg_id) : undefined;
    if (localId !== undefined) {
      byId.delete(localId);
      localByClientId.delete(m.client_msg_id);
    }
    const current = byId.get(m.id);
    byId.set(m.id, current ? pick(current, m) : m);
  }
  return [...byId.values()].sort(compare);
}

export interface Draft {
  room_id: string;
  body: string;
  client_msg_id: string;
  sender_id: string;
  reply_to?: string | null;
  now?: string;
}

/** Show a message we are sending before the server has it (state "pending"). */
export function addPending(timeline: readonly TimelineMessage[], d: Draft): TimelineMessage[] {
  if (timeline.some((m) => m.client_msg_id === d.client_msg_id)) return timeline as TimelineMessage[];
  const local: TimelineMessage = {
    id: LOCAL_PREFIX + d.client_msg_id,
    room_id: d.room_id,
    seq: 0,
    sender_id: d.sender_id,
    body: d.body,
    client_msg_id: d.client_msg_id,
    reply_to: d.reply_to ?? null,
    created_at: d.now ?? new Date().toISOString(),
    edited_at: null,
    reactions: [],
    state: "pending",
  };
  return [...timeline, local];
}

function setLocalState(timeline: readonly TimelineMessage[], clientMsgId: string, state: "pending" | "failed"): TimelineMessage[] {
  let changed = false;
  const next = timeline.map((m) => {
    if (isLocal(m) && m.client_msg_id === clientMsgId && m.state !== state) {
      changed = true;
      return { ...m, state };
    }
    return m;
  });
  return changed ? next : (timeline as TimelineMessage[]);
}

/** The send failed or timed out: keep the message, offer a retry. */
export const markFailed = (t: readonly TimelineMessage[], clientMsgId: string) => setLocalState(t, clientMsgId, "failed");
/** Retrying: the same client_msg_id again, so the server cannot create a duplicate. */
export const markRetrying = (t: readonly TimelineMessage[], clientMsgId: string) => setLocalState(t, clientMsgId, "pending");

/** Drop a local message the user gave up on. */
export function discardLocal(timeline: readonly TimelineMessage[], clientMsgId: string): TimelineMessage[] {
  return timeline.filter((m) => !(isLocal(m) && m.client_msg_id === clientMsgId));
}

export function applyDeleted(timeline: readonly TimelineMessage[], messageId: string, when = "deleted"): TimelineMessage[] {
  return timeline.map((m) =>
    m.id === messageId ? { ...m, body: "", reactions: [], deleted_at: m.deleted_at ?? when } : m,
  );
}

export function applyReactions(timeline: readonly TimelineMessage[], messageId: string, reactions: Reaction[]): TimelineMessage[] {
  return timeline.map((m) => (m.id === messageId ? { ...m, reactions: reactions.filter((r) => r.count > 0) } : m));
}

/** Toggle my reaction locally (optimistic); the server's reaction.updated settles it. */
export function toggleReaction(timeline: readonly TimelineMessage[], messageId: string, emoji: string, userId: string): TimelineMessage[] {
  return timeline.map((m) => {
    if (m.id !== messageId) return m;
    const existing = m.reactions.find((r) => r.emoji === emoji);
    let reactions: Reaction[];
    if (existing && existing.user_ids.includes(userId)) {
      reactions = m.reactions
        .map((r) => (r.emoji === emoji ? { ...r, count: r.count - 1, user_ids: r.user_ids.filter((u) => u !== userId) } : r))
        .filter((r) => r.count > 0);
    } else if (existing) {
      reactions = m.reactions.map((r) => (r.emoji === emoji ? { ...r, count: r.count + 1, user_ids: [...r.user_ids, userId] } : r));
    } else {
      reactions = [...m.reactions, { emoji, count: 1, user_ids: [userId] }];
    }
    return { ...m, reactions };
  });
}

/** The highest seq of a server message in the timeline (0 when none). */
export function latestSeq(timeline: readonly TimelineMessage[]): number {
  let max = 0;
  for (const m of timeline) if (!isLocal(m) && m.seq > max) max = m.seq;
  return max;
}

/** The lowest seq loaded, the cursor for the next page of older history. */
export function oldestSeq(timeline: readonly TimelineMessage[]): number | null {
  let min: number | null = null;
  for (const m of timeline) if (!isLocal(m) && (min === null || m.seq < min)) min = m.seq;
  return min;
}

// --- presentation: day separators, grouping, the "new messages" divider ---------------

export type TimelineItem =
  | { kind: "day"; key: string; label: string }
  | { kind: "new"; key: string }
  | { kind: "message"; key: string; message: TimelineMessage; grouped: boolean };

const GROUP_WINDOW_MS = 5 * 60 * 1000;

export function dayKey(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

export function dayLabel(iso: string, now = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (dayKey(iso) === dayKey(now.toISOString())) return "Today";
  const y = new Date(now);
  y.setDate(now.getDate() - 1);
  if (dayKey(iso) === dayKey(y.toISOString())) return "Yesterday";
  return d.toLocaleDateString(undefined, { weekday: "long", month: "long", day: "numeric", year: d.getFullYear() === now.getFullYear() ? undefined : "numeric" });
}

/** Lay the timeline out: a separator at each new day, consecutive messages of one sender
 * within five minutes grouped, and a "new messages" divider before the first unread
 * message from someone else (after `lastReadSeq`). */
export function layout(timeline: readonly TimelineMessage[], opts: { lastReadSeq: number | null; myId: string; now?: Date }): TimelineItem[] {
  const items: TimelineItem[] = [];
  let prev: TimelineMessage | null = null;
  let dividerPlaced = opts.lastReadSeq === null;
  for (const m of timeline) {
    const day = dayKey(m.created_at);
    let newDay = false;
    if (!prev || dayKey(prev.created_at) !== day) {
      items.push({ kind: "day", key: `day-${day}-${m.id}`, label: dayLabel(m.created_at, opts.now) });
      newDay = true;
    }
    let divider = false;
    if (!dividerPlaced && !isLocal(m) && opts.lastReadSeq !== null && m.seq > opts.lastReadSeq && m.sender_id !== opts.myId) {
      items.push({ kind: "new", key: "new-messages" });
      dividerPlaced = true;
      divider = true;
    }
    const grouped =
      !newDay &&
      !divider &&
      prev !== null &&
      prev.sender_id === m.sender_id &&
      !prev.deleted_at &&
      !m.reply_to &&
      new Date(m.created_at).getTime() - new Date(prev.created_at).getTime() < GROUP_WINDOW_MS;
    items.push({ kind: "message", key: m.id, message: m, grouped });
    prev = m;
  }
  return items;
}
