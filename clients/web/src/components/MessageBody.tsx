"use client";
import { tokenize } from "@/lib/text";

/** A message body as React text nodes: @mentions highlighted, http(s) links clickable.
 * Nothing here is ever interpreted as HTML. */
export function MessageBody({ body, myUsername }: { body: string; myUsername?: string }) {
  return (
    <>
      {tokenize(body).map((s, i) => {
        if (s.kind === "mention") {
          const me = myUsername && s.text.slice(1).toLowerCase() === myUsername.toLowerCase();
          return (
            <span key={i} className={`rounded px-0.5 font-medium ${me ? "bg-amber-200 text-amber-950 dark:bg-amber-800 dark:text-amber-50" : "bg-indigo-100 text-indigo-900 dark:bg-indigo-900 dark:text-indigo-100"}`}>
              {s.text}
            </span>
          );
        }
        if (s.kind === "link") {
          return (
            <a key={i} href={s.text} target="_blank" rel="noopener noreferrer nofollow ugc" className="text-indigo-700 underline dark:text-indigo-300">
              {s.text}
            </a>
          );
        }
        return <span key={i}>{s.text}</span>;
      })}
    </>
  );
}
