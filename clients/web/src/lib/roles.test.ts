import { describe, expect, it } from "vitest";
import { canAddMembers, canChangeRole, canRemove, sortMembers, toggleSelected } from "./roles";
import type { Member } from "./types";

const m = (user_id: string, role: Member["role"]): Member => ({ user_id, username: user_id, role, last_read_seq: 0 });

describe("member management rules", () => {
  it("lets anyone add to public rooms, only managers to private ones, nobody to DMs", () => {
    expect(canAddMembers({ type: "group", visibility: "public" }, "member")).toBe(true);
    expect(canAddMembers({ type: "group", visibility: "private" }, "member")).toBe(false);
    expect(canAddMembers({ type: "group", visibility: "private" }, "admin")).toBe(true);
    expect(canAddMembers({ type: "direct", visibility: "private" }, "owner")).toBe(false);
    expect(canAddMembers({ type: "group", visibility: "public" }, null)).toBe(false);
  });

  it("removes like the service: never the owner or yourself, admins only by the owner", () => {
    expect(canRemove("owner", m("b", "admin"), "a")).toBe(true);
    expect(canRemove("admin", m("b", "admin"), "a")).toBe(false);
    expect(canRemove("admin", m("b", "member"), "a")).toBe(true);
    expect(canRemove("admin", m("o", "owner"), "a")).toBe(false);
    expect(canRemove("member", m("b", "member"), "a")).toBe(false);
    expect(canRemove("owner", m("a", "owner"), "a")).toBe(false);
  });

  it("changes roles only as the owner and never the owner's", () => {
    expect(canChangeRole("owner", m("b", "member"))).toBe(true);
    expect(canChangeRole("owner", m("a", "owner"))).toBe(false);
    expect(canChangeRole("admin", m("b", "member"))).toBe(false);
  });

  it("sorts owner, admins, members, then by name", () => {
    const names: Record<string, string> = { a: "Zed", b: "Amy", c: "Bob", d: "Cat" };
    const sorted = sortMembers([m("d", "member"), m("c", "admin"), m("a", "owner"), m("b", "member")], (id) => names[id] ?? id);
    expect(sorted.map((x) => x.user_id)).toEqual(["a", "c", "b", "d"]);
  });

  it("toggles a multi-select in pick order up to the limit", () => {
    expect(toggleSelected([], "a")).toEqual(["a"]);
    expect(toggleSelected(["a", "b"], "a")).toEqual(["b"]);
    expect(toggleSelected(["a", "b"], "c", 2)).toEqual(["a", "b"]);
  });
});
