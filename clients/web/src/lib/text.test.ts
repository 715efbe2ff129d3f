import { describe, expect, it } from "vitest";
import { completeMention, highlight, initials, mentionAt, tokenize } from "./text";

describe("text", () => {
  it("tokenizes mentions and links, keeps markup as text", () => {
    expect(tokenize("hi @bob see https://x.test/a <b>x</b>")).toEqual([
      { text: "hi ", kind: "text" },
      { text: "@bob", kind: "mention" },
      { text: " see ", kind: "text" },
      { text: "https://x.test/a", kind: "link" },
      { text: " <b>x</b>", kind: "text" },
    ]);
    expect(tokenize("javascript:alert(1)")).toEqual([{ text: "javascript:alert(1)", kind: "text" }]);
  });

  it("finds and completes the @mention at the caret", () => {
    expect(mentionAt("hello @al", 9)).toEqual({ start: 6, query: "al" });
    expect(mentionAt("mail@al", 7)).toBeNull();
    expect(completeMention("hello @al", 9, "alice")).toEqual({ text: "hello @alice ", caret: 13 });
  });

  it("highlights search terms case-insensitively and literally", () => {
    expect(highlight("Hello world, hello", "hello")).toEqual([
      { text: "Hello", kind: "match" },
      { text: " world, ", kind: "text" },
      { text: "hello", kind: "match" },
    ]);
    expect(highlight("a.b axb", "a.b")).toEqual([
      { text: "a.b", kind: "match" },
      { text: " axb", kind: "text" },
    ]);
  });

  it("makes avatar initials from one or two words, emoji-safe", () => {
    expect(initials("Ada Lovelace")).toBe("AL");
    expect(initials("  ada  ")).toBe("A");
    expect(initials("Grace Brewster Hopper")).toBe("GH");
    expect(initials("")).toBe("?");
    expect(initials("😀 smile")).toBe("😀S");
  });
});
