import { describe, expect, it } from "vitest";
import { addLocal, applyFrame, applyLatestPage, initialState, typingUsers, type ChatState } from "./chatState";
import { resumeFrame } from "./cursors";

const me = { id: "me", username: "me", email: "me@x", display_name: "Me", email_verified: true };
const wire = (seq: number, over: Record<string, unknown> = {}) => ({
  id: `m${seq}`, room_id: "r1", seq, sender_id: "bob", body: `b${seq}`, client_msg_id: `c${seq}`,
  reply_to: null, created_at: new Date(Date.UTC(2026, 0, 1, 0, seq)).toISOString(), edited_at: null, reactions: [], ...over,
});
const ready = (): ChatState =>
  applyFrame({ ...initialState, me }, { type: "ready", user: me, rooms: [{ id: "r1", name: "general", type: "group", visibility: "public", last_seq: 2, unread_count: 0 }] }, 0);

describe("applyFrame", () => {
  it("room.updated keeps my role unless the event changes it", () => {
    let s = applyFrame({ ...initialState, me }, { type: "ready", user: me, rooms: [{ id: "r1", name: "general", type: "group", membership: { role: "admin" } }] }, 0);
    expect(s.rooms.r1!.role).toBe("admin");
    // someone else joined: the event's room has no membership
    s = applyFrame(s, { type: "room.updated", room: { id: "r1", name: "general", type: "group", member_count: 3 }, member: { user_id: "bob", change: "joined", role: "member" } }, 0);
    expect(s.rooms.r1!.role).toBe("admin");
    expect(s.rooms.r1!.member_count).toBe(3);
    s = applyFrame(s, { type: "room.updated", room: { id: "r1", name: "general", type: "group" }, member: { user_id: "me", change: "role_changed", role: "member" } }, 0);
    expect(s.rooms.r1!.role).toBe("member");
  });

  it("ready seeds rooms and resume cursors", () => {
    const s = ready();
    expect(s.rooms.r1!.name).toBe("general");
    expect(resumeFrame(s.cursors)).toEqual({ type: "resume", rooms: { r1: 2 } });
  });

  it("message.created twice (live + replay) is applied once; unread counted once", () => {
    let s = ready();
    s = applyFrame(s, { type: "message.created", message: wire(3) }, 0);
    s = applyFrame(s, { type: "message.created", message: wire(3) }, 0);
    expect(s.timelines.r1!.messages).toHaveLength(1);
    expect(s.rooms.r1!.unread_count).toBe(1);
    expect(s.rooms.r1!.last_message!.id).toBe("m3");
    expect(s.cursors.r1).toBe(3);
  });

  it("resume after reconnect: replayed gap merges without duplicates", () => {
    let s = ready();
    for (const i of [3, 4]) s = applyFrame(s, { type: "message.created", message: wire(i) }, 0);
    // reconnect: the new `ready` reports the room at seq 6, with 5 and 6 unseen
    s = applyFrame(s, { type: "ready", user: me, rooms: [{ id: "r1", name: "general", type: "group", last_seq: 6, last_message: wire(6) }] }, 0);
    const resume = resumeFrame(s.cursors);
    expect(resume.rooms.r1).toBe(4);
    // the server replays from the cursor, plus an overlap the client must tolerate
    for (const i of [4, 5, 6]) s = applyFrame(s, { type: "message.created", message: wire(i) }, 0);
    expect(s.timelines.r1!.messages.map((m) => m.seq)).toEqual([3, 4, 5, 6]);
    expect(s.cursors.r1).toBe(6);
  });

  it("an ack does not move the cursor (broadcasts of lower seqs may still be in flight)", () => {
    let s = ready();
    s = addLocal(s, { room_id: "r1", body: "yo", client_msg_id: "cx", sender_id: "me" });
    s = applyFrame(s, { type: "message.ack", client_msg_id: "cx", message: wire(9, { id: "srv", sender_id: "me", client_msg_id: "cx" }) }, 0);
    expect(s.cursors.r1).toBe(2);
  });

  it("leaving or being removed drops the room; other room events keep per-user data", () => {
    let s = applyFrame(ready(), { type: "message.created", event_seq: 3, message: wire(3) }, 0);
    s = applyFrame(s, { type: "room.updated", event_seq: 4, room: { id: "r1", type: "group", visibility: "public", name: "renamed", last_seq: 4, membership: null, last_message: null } }, 0);
    expect(s.rooms.r1).toMatchObject({ name: "renamed", unread_count: 1 });
    expect(s.rooms.r1!.last_message!.id).toBe("m3");
    s = applyFrame(s, { type: "room.updated", event_seq: 5, room: { id: "r1", name: "renamed" }, member: { user_id: "me", change: "removed" } }, 0);
    expect(s.rooms.r1).toBeUndefined();
    expect(s.cursors.r1).toBeUndefined();
  });

  it("ack replaces the optimistic message; the broadcast does not duplicate it", () => {
    let s = ready();
    s = addLocal(s, { room_id: "r1", body: "yo", client_msg_id: "cx", sender_id: "me" });
    expect(s.timelines.r1!.messages[0]!.state).toBe("pending");
    const server = wire(3, { id: "srv", sender_id: "me", client_msg_id: "cx", body: "yo" });
    s = applyFrame(s, { type: "message.ack", client_msg_id: "cx", message: server }, 0);
    s = applyFrame(s, { type: "message.created", message: server }, 0);
    expect(s.timelines.r1!.messages.map((m) => [m.id, m.state])).toEqual([["srv", "sent"]]);
    expect(s.rooms.r1!.unread_count).toBe(0);
  });

  it("edits, deletes and reactions update the timeline; event_seq moves the cursor", () => {
    let s = ready();
    s = applyFrame(s, { type: "message.created", event_seq: 3, message: wire(3) }, 0);
    s = applyFrame(s, { type: "message.updated", event_seq: 4, message: wire(3, { body: "edited", edited_at: "2026-01-01T01:00:00Z" }) }, 0);
    expect(s.timelines.r1!.messages[0]!.body).toBe("edited");
    s = applyFrame(s, { type: "reaction.updated", event_seq: 5, room_id: "r1", message_id: "m3", emoji: "🎉", user_id: "bob", added: true, reactions: [{ emoji: "🎉", count: 1, user_ids: ["bob"] }] }, 0);
    expect(s.timelines.r1!.messages[0]!.reactions[0]!.emoji).toBe("🎉");
    // `seq` here is the deleted message's seq, not the event's
    s = applyFrame(s, { type: "message.deleted", room_id: "r1", message_id: "m3", seq: 3, event_seq: 6 }, 0);
    expect(s.timelines.r1!.messages[0]!.deleted_at).toBeTruthy();
    expect(s.timelines.r1!.messages[0]!.body).toBe("");
    expect(s.cursors.r1).toBe(6);
    // a read marker event moves it too; a replayed tombstone (empty body) stays deleted
    s = applyFrame(s, { type: "read", room_id: "r1", user_id: "bob", seq: 3, event_seq: 7 }, 0);
    s = applyFrame(s, { type: "message.created", event_seq: 3, message: wire(3, { body: "" }) }, 0);
    expect(s.cursors.r1).toBe(7);
    expect(s.timelines.r1!.messages[0]!.deleted_at).toBeTruthy();
  });

  it("typing expires and is cleared by a message; my own typing is ignored", () => {
    let s = ready();
    s = applyFrame(s, { type: "typing", room_id: "r1", user_id: "bob" }, 1000);
    s = applyFrame(s, { type: "typing", room_id: "r1", user_id: "me" }, 1000);
    expect(typingUsers(s, "r1", 2000)).toEqual(["bob"]);
    expect(typingUsers(s, "r1", 60_000)).toEqual([]);
    s = applyFrame(s, { type: "message.created", message: wire(3) }, 2000);
    expect(typingUsers(s, "r1", 2000)).toEqual([]);
  });

  it("read receipts: mine clears unread, others are recorded", () => {
    let s = ready();
    s = applyFrame(s, { type: "message.created", message: wire(3) }, 0);
    s = applyFrame(s, { type: "read", room_id: "r1", user_id: "bob", seq: 3 }, 0);
    expect(s.reads.r1!.bob).toBe(3);
    s = applyFrame(s, { type: "read", room_id: "r1", user_id: "me", seq: 3 }, 0);
    expect(s.rooms.r1!.unread_count).toBe(0);
  });

  it("the latest page drops a stray live tail older than the page (no gap)", () => {
    let s = ready();
    s = applyFrame(s, { type: "message.created", message: wire(1) }, 0);
    s = applyLatestPage(s, "r1", [3, 4].map((i) => ({ ...wire(i), reactions: [], reply_to: null, edited_at: null })), true);
    expect(s.timelines.r1!.messages.map((m) => m.seq)).toEqual([3, 4]);
    expect(s.timelines.r1!.loaded).toBe(true);
  });

  it("accepts proto-style room fields", () => {
    const s = applyFrame(initialState, { type: "room.updated", room: { id: "d1", type: "ROOM_TYPE_DIRECT", visibility: "VISIBILITY_PRIVATE", membership: { unread_count: 2, last_read_seq: 1 } } }, 0);
    expect(s.rooms.d1).toMatchObject({ type: "direct", visibility: "private", unread_count: 2, last_read_seq: 1 });
  });
});
