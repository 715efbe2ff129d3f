import { describe, expect, it } from "vitest";
import { advance, forget, isNew, resumeFrame, seed } from "./cursors";

describe("resume cursors", () => {
  it("only move forward and ignore seq-less events", () => {
    let c = advance({}, "r1", 5);
    c = advance(c, "r1", 3);
    c = advance(c, "r1", undefined);
    c = advance(c, "r1", 0);
    expect(c).toEqual({ r1: 5 });
    c = advance(c, "r1", 6);
    expect(c.r1).toBe(6);
  });

  it("seeding keeps an existing cursor (so the gap gets replayed)", () => {
    let c = seed({}, "r1", 10);
    expect(c.r1).toBe(10);
    c = advance(c, "r2", 4);
    c = seed(c, "r2", 9); // ready says the room is at 9, but we only saw 4: resume from 4
    expect(c.r2).toBe(4);
  });

  it("builds the resume frame and forgets rooms we left", () => {
    const c = forget({ r1: 3, r2: 7 }, "r1");
    expect(resumeFrame(c)).toEqual({ type: "resume", rooms: { r2: 7 } });
    expect(isNew(c, "r2", 7)).toBe(false);
    expect(isNew(c, "r2", 8)).toBe(true);
    expect(isNew(c, "r2", undefined)).toBe(true);
  });
});
