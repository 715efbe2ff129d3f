import { describe, expect, it } from "vitest";
import { addPending, applyDeleted, layout, markFailed, markRetrying, mergeMessages, oldestSeq, latestSeq, toggleReaction, isLocal } from "./timeline";
import type { Message, TimelineMessage } from "./types";

const msg = (seq: number, over: Partial<Message> = {}): Message => ({
  id: `m${seq}`,
  room_id: "r1",
  seq,
  sender_id: "alice",
  body: `hello ${seq}`,
  client_msg_id: `c${seq}`,
  reply_to: null,
  created_at: new Date(Date.UTC(2026, 0, 1, 12, seq)).toISOString(),
  edited_at: null,
  reactions: [],
  ...over,
});

describe("mergeMessages", () => {
  it("orders by seq and dedups by id", () => {
    let t: TimelineMessage[] = [];
    t = mergeMessages(t, [msg(3), msg(1)]);
    t = mergeMessages(t, [msg(2), msg(3), msg(1)]);
    expect(t.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(t.every((m) => m.state === "sent")).toBe(true);
  });

  it("a replayed page overlapping live messages yields no duplicates", () => {
    const live = mergeMessages([], [msg(10), msg(11)]);
    const replay = Array.from({ length: 12 }, (_, i) => msg(i + 1));
    const t = mergeMessages(live, replay);
    expect(t).toHaveLength(12);
    expect(new Set(t.map((m) => m.id)).size).toBe(12);
  });

  it("keeps a tombstone over a stale copy and takes newer edits", () => {
    let t = mergeMessages([], [msg(1)]);
    t = applyDeleted(t, "m1", "2026-01-01T13:00:00Z");
    t = mergeMessages(t, [msg(1)]);
    expect(t[0]!.deleted_at).toBeTruthy();
    expect(t[0]!.body).toBe("");

    let u = mergeMessages([], [msg(2, { body: "v2", edited_at: "2026-01-01T12:10:00Z" })]);
    u = mergeMessages(u, [msg(2, { body: "v1", edited_at: "2026-01-01T12:05:00Z" })]);
    expect(u[0]!.body).toBe("v2");
    u = mergeMessages(u, [msg(2, { body: "v3", edited_at: "2026-01-01T12:20:00Z" })]);
    expect(u[0]!.body).toBe("v3");
  });
});

describe("optimistic send", () => {
  const draft = { room_id: "r1", body: "hi", client_msg_id: "cx", sender_id: "me", now: "2026-01-01T12:30:00Z" };

  it("pending → sent when the server copy arrives with the same client_msg_id", () => {
    let t = mergeMessages([], [msg(1)]);
    t = addPending(t, draft);
    expect(t.at(-1)!.state).toBe("pending");
    expect(isLocal(t.at(-1)!)).toBe(true);
    t = mergeMessages(t, [msg(2, { id: "srv", client_msg_id: "cx", sender_id: "me", body: "hi" })]);
    expect(t.map((m) => m.id)).toEqual(["m1", "srv"]);
    expect(t.at(-1)!.state).toBe("sent");
  });

  it("the ack and the broadcast of the same message make one entry", () => {
    let t = addPending([], draft);
    const server = msg(5, { id: "srv", client_msg_id: "cx", sender_id: "me" });
    t = mergeMessages(t, [server]);
    t = mergeMessages(t, [server]);
    expect(t).toHaveLength(1);
  });

  it("pending → failed → retry keeps one local message", () => {
    let t = addPending([], draft);
    t = addPending(t, draft); // double submit
    expect(t).toHaveLength(1);
    t = markFailed(t, "cx");
    expect(t[0]!.state).toBe("failed");
    t = markRetrying(t, "cx");
    expect(t[0]!.state).toBe("pending");
  });

  it("in-flight messages stay below server messages", () => {
    let t = addPending([], draft);
    t = mergeMessages(t, [msg(7)]);
    expect(t.map((m) => m.id)).toEqual(["m7", "local:cx"]);
    expect(latestSeq(t)).toBe(7);
    expect(oldestSeq(t)).toBe(7);
  });
});

describe("reactions", () => {
  it("toggles my reaction", () => {
    let t = mergeMessages([], [msg(1, { reactions: [{ emoji: "👍", count: 1, user_ids: ["bob"] }] })]);
    t = toggleReaction(t, "m1", "👍", "me");
    expect(t[0]!.reactions).toEqual([{ emoji: "👍", count: 2, user_ids: ["bob", "me"] }]);
    t = toggleReaction(t, "m1", "👍", "me");
    t = toggleReaction(t, "m1", "👍", "bob");
    expect(t[0]!.reactions).toEqual([]);
  });
});

describe("layout", () => {
  it("adds day separators, groups by sender and places the new-messages divider", () => {
    const t = mergeMessages([], [
      msg(1, { created_at: "2026-01-01T10:00:00Z" }),
      msg(2, { created_at: "2026-01-01T10:01:00Z" }),
      msg(3, { created_at: "2026-01-02T10:00:00Z" }),
      msg(4, { created_at: "2026-01-02T10:01:00Z", sender_id: "bob" }),
      msg(5, { created_at: "2026-01-02T10:02:00Z", sender_id: "bob" }),
    ]);
    const items = layout(t, { lastReadSeq: 3, myId: "alice", now: new Date("2026-03-01T00:00:00Z") });
    expect(items.map((i) => (i.kind === "message" ? `${i.message.seq}${i.grouped ? "g" : ""}` : i.kind))).toEqual([
      "day", "1", "2g", "day", "3", "new", "4", "5g",
    ]);
  });

  it("no divider when everything is read", () => {
    const t = mergeMessages([], [msg(1), msg(2)]);
    expect(layout(t, { lastReadSeq: 2, myId: "x" }).some((i) => i.kind === "new")).toBe(false);
  });
});
