"use client";
import { tokenize } from "@/lib/text";

const linkStyle = "break-all text-indigo-700 underline dark:text-indigo-300";

/** An email's text part as React text nodes (never HTML). Links into this app (the
 * verification and reset links) open here, in this tab; any other link opens in a new one. */
export function MailText({ text }: { text: string }) {
  const origin = typeof window !== "undefined" ? window.location.origin : "";
  return (
    <>
      {tokenize(text).map((s, i) => {
        if (s.kind !== "link") return <span key={i}>{s.text}</span>;
        let url: URL | null = null;
        try {
          url = new URL(s.text);
        } catch {
          /* not a URL after all: plain text */
        }
        if (!url) return <span key={i}>{s.text}</span>;
        if (url.origin === origin) {
          return (
            <a key={i} href={url.pathname + url.search + url.hash} className={linkStyle}>
              {s.text}
            </a>
          );
        }
        return (
          <a key={i} href={url.href} target="_blank" rel="noopener noreferrer nofollow" className={linkStyle}>
            {s.text}
          </a>
        );
      })}
    </>
  );
}
