// Resume cursors: the last seq seen per room. They only move forward, and they move
// only for events that carry a seq (typing and presence have none).

export type Cursors = Readonly<Record<string, number>>;

export function advance(cursors: Cursors, roomId: string, seq: number | null | undefined): Cursors {
  if (typeof seq !== "number" || !Number.isFinite(seq) || seq <= 0) return cursors;
  const current = cursors[roomId] ?? 0;
  return seq > current ? { ...cursors, [roomId]: seq } : cursors;
}

/** Seed the cursor of a room we hold no cursor for (from `ready`'s rooms or the room
 * list). An existing cursor is left alone: `ready` arrives before `resume`, and moving
 * the cursor to the room's latest seq there would skip the very gap resume must replay. */
export function seed(cursors: Cursors, roomId: string, seq: number): Cursors {
  return roomId in cursors || !(seq >= 0) ? cursors : { ...cursors, [roomId]: seq };
}

export function forget(cursors: Cursors, roomId: string): Cursors {
  if (!(roomId in cursors)) return cursors;
  const next = { ...cursors };
  delete next[roomId];
  return next;
}

/** The frame that asks the BFF to replay what we missed, then go live. */
export function resumeFrame(cursors: Cursors): { type: "resume"; rooms: Record<string, number> } {
  return { type: "resume", rooms: { ...cursors } };
}

/** Should this event be applied, or is it one we already have (a replay overlap)?
 * Seq-less events always apply; message events are also deduped by id in the timeline. */
export function isNew(cursors: Cursors, roomId: string, seq: number | null | undefined): boolean {
  if (typeof seq !== "number" || seq <= 0) return true;
  return seq > (cursors[roomId] ?? 0);
}
