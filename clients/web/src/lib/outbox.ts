// Optimistic sends waiting for their ack. A send is retried with the same
// client_msg_id (the server dedups it), so resending after a reconnect is safe.

export interface OutboxEntry {
  client_msg_id: string;
  room_id: string;
  body: string;
  reply_to: string | null;
  /** When the current attempt was sent (ms), or null while waiting for a connection. */
  sent_at: number | null;
  /** When the message was first queued (ms). */
  queued_at: number;
}

export type Outbox = Readonly<Record<string, OutboxEntry>>;

export const SEND_TIMEOUT_MS = 10_000;

export function enqueue(outbox: Outbox, e: Omit<OutboxEntry, "sent_at" | "queued_at">, now: number): Outbox {
  return { ...outbox, [e.client_msg_id]: { ...e, sent_at: null, queued_at: now } };
}

export function markSent(outbox: Outbox, id: string, now: number): Outbox {
  const e = outbox[id];
  return e ? { ...outbox, [id]: { ...e, sent_at: now } } : outbox;
}

/** The ack (or the message itself arriving) settles the entry. */
export function settle(outbox: Outbox, id: string): Outbox {
  if (!(id in outbox)) return outbox;
  const next = { ...outbox };
  delete next[id];
  return next;
}

/** Entries to (re)send now that the socket is open: unsent ones, in queue order. */
export function unsent(outbox: Outbox): OutboxEntry[] {
  return Object.values(outbox)
    .filter((e) => e.sent_at === null)
    .sort((a, b) => a.queued_at - b.queued_at);
}

/** After a reconnect every entry still in flight must be sent again. */
export function resetAll(outbox: Outbox): Outbox {
  const next: Record<string, OutboxEntry> = {};
  for (const [k, e] of Object.entries(outbox)) next[k] = { ...e, sent_at: null };
  return next;
}

/** Entries that waited too long (sent without ack, or never sent): they become "failed". */
export function expired(outbox: Outbox, now: number, timeout = SEND_TIMEOUT_MS): string[] {
  return Object.values(outbox)
    .filter((e) => now - (e.sent_at ?? e.queued_at) >= timeout)
    .map((e) => e.client_msg_id);
}

export function sendFrame(e: OutboxEntry) {
  return {
    type: "message.send" as const,
    room_id: e.room_id,
    body: e.body,
    client_msg_id: e.client_msg_id,
    ...(e.reply_to ? { reply_to: e.reply_to } : {}),
  };
}
