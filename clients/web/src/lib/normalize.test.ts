import { describe, expect, it } from "vitest";
import { listOf, normalizeFriendRequest, normalizeMember, normalizeMessage, normalizeProfile, normalizePublicRooms, normalizeRoom } from "./normalize";

describe("normalize", () => {
  it("unwraps lists however the BFF wraps them", () => {
    expect(listOf([1, 2])).toEqual([1, 2]);
    expect(listOf({ rooms: [1] }, "rooms")).toEqual([1]);
    expect(listOf({ items: [3] }, "rooms")).toEqual([3]);
    expect(listOf(null, "rooms")).toEqual([]);
  });

  it("reads messages with proto-style timestamps and drops empty reactions", () => {
    const m = normalizeMessage({
      id: "m1", room_id: "r1", seq: "7", sender_id: "u1", body: "hi", client_msg_id: "c",
      reply_to: "", create_time: "2026-01-01T00:00:00Z", edit_time: "2026-01-01T00:01:00Z",
      reactions: [{ emoji: "👍", count: 0, user_ids: [] }, { emoji: "🎉", user_ids: ["u2"] }],
    });
    expect(m).toMatchObject({ seq: 7, reply_to: null, created_at: "2026-01-01T00:00:00Z", edited_at: "2026-01-01T00:01:00Z" });
    expect(m!.reactions).toEqual([{ emoji: "🎉", count: 1, user_ids: ["u2"] }]);
    expect(normalizeMessage({ id: "x" })).toBeNull();
  });

  it("reads rooms in both spellings", () => {
    expect(normalizeRoom({ id: "r", type: "direct", visibility: "private", unread_count: 3 })).toMatchObject({ type: "direct", unread_count: 3 });
    expect(normalizeRoom({ id: "r", type: "ROOM_TYPE_GROUP", visibility: "VISIBILITY_PUBLIC" })).toMatchObject({ type: "group", visibility: "public" });
  });

  it("reads profiles flat or wrapped with the relationship", () => {
    expect(normalizeProfile({ profile: { user_id: "u", username: "ann", display_name: "" }, relationship: "RELATIONSHIP_FRIEND" })).toMatchObject({
      id: "u",
      display_name: "ann",
      relationship: "friend",
    });
    expect(normalizeFriendRequest({ id: "fr", direction: "FRIEND_REQUEST_DIRECTION_OUTGOING", profile: { id: "u", username: "b" } })).toMatchObject({
      direction: "outgoing",
    });
  });

  it("reads the public room directory with membership and the cursor", () => {
    const page = normalizePublicRooms({
      rooms: [
        { room: { id: "r1", type: "group", visibility: "public", name: "Design", member_count: 4, membership: null }, is_member: true },
        { room: { id: "r2", type: "group", visibility: "public", name: "Random", member_count: 1, membership: null }, is_member: false },
        { nonsense: true },
      ],
      next_cursor: "abc",
    });
    expect(page.rooms.map((r) => [r.id, r.is_member, r.member_count])).toEqual([["r1", true, 4], ["r2", false, 1]]);
    expect(page.next_cursor).toBe("abc");
    expect(normalizePublicRooms({ rooms: [], next_cursor: null }).next_cursor).toBeNull();
  });

  it("reads members with their role, defaulting unknown roles to member", () => {
    expect(normalizeMember({ user_id: "u", username: "ann", role: "MEMBER_ROLE_OWNER", last_read_seq: 3 })).toEqual({ user_id: "u", username: "ann", role: "owner", last_read_seq: 3 });
    expect(normalizeMember({ user_id: "u", role: "emperor" })?.role).toBe("member");
    expect(normalizeMember({ username: "no id" })).toBeNull();
  });
});
