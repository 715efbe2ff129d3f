// Text helpers for message bodies. Everything here returns plain strings or spans;
// the UI renders them as text nodes (never as HTML).

export interface Span {
  text: string;
  kind: "text" | "mention" | "link" | "match";
}

const TOKEN = /(@[A-Za-z0-9_.-]{1,64})|(https?:\/\/[^\s<>"']+)/g;

/** Split a body into text, @mentions and http(s) links. */
export function tokenize(body: string): Span[] {
  const spans: Span[] = [];
  let last = 0;
  for (const m of body.matchAll(TOKEN)) {
    const i = m.index ?? 0;
    if (i > last) spans.push({ text: body.slice(last, i), kind: "text" });
    spans.push({ text: m[0], kind: m[1] ? "mention" : "link" });
    last = i + m[0].length;
  }
  if (last < body.length) spans.push({ text: body.slice(last), kind: "text" });
  return spans;
}

/** The @query being typed at the caret, if any: `{start, query}`. */
export function mentionAt(text: string, caret: number): { start: number; query: string } | null {
  const before = text.slice(0, caret);
  const m = /(^|\s)@([A-Za-z0-9_.-]{0,64})$/.exec(before);
  if (!m) return null;
  return { start: caret - m[2]!.length - 1, query: m[2]! };
}

/** Replace the @query at the caret with `@username `; returns the new text and caret. */
export function completeMention(text: string, caret: number, username: string): { text: string; caret: number } {
  const at = mentionAt(text, caret);
  if (!at) return { text, caret };
  const insert = `@${username} `;
  return { text: text.slice(0, at.start) + insert + text.slice(caret), caret: at.start + insert.length };
}

/** Local highlighting when the server gives no spans: case-insensitive term matches. */
export function highlight(body: string, query: string): Span[] {
  const terms = query
    .split(/\s+/)
    .map((t) => t.trim())
    .filter((t) => t.length > 0)
    .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  if (terms.length === 0) return [{ text: body, kind: "text" }];
  const split = new RegExp(`(${terms.join("|")})`, "i");
  const whole = new RegExp(`^(?:${terms.join("|")})$`, "i");
  return body
    .split(new RegExp(split.source, "gi"))
    .filter((s) => s !== "")
    .map((s) => ({ text: s, kind: whole.test(s) ? "match" : "text" }));
}

export function newClientMsgId(): string {
  if (typeof crypto !== "undefined" && "randomUUID" in crypto) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Up to two initials for an avatar ("Ada Lovelace" → "AL", "ada" → "A"). */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const first = [...(words[0] ?? "?")][0] ?? "?";
  const last = words.length > 1 ? ([...(words.at(-1) ?? "")][0] ?? "") : "";
  return (first + last).toUpperCase();
}
