"use client";
import { useCallback, useEffect, useState } from "react";
import { ThemeToggle } from "@/components/ThemeToggle";
import { Alert, Button, Spinner } from "@/components/ui";
import { api, ApiError, errorText } from "@/lib/api";
import { listOf } from "@/lib/normalize";
import { MailText } from "./MailText";

interface DevMail {
  id: string;
  from: string;
  to: string;
  subject: string;
  text: string;
  create_time: string | null;
}

// The embedded mode's mailbox (the mail service's dev provider, proxied by the BFF at
// GET /api/v1/dev/mail), newest first. Bodies are shown as text; HTML bodies are never
// rendered. The newest email is open, so its verification or reset link is one click away.
export default function DevMailPage() {
  const [mails, setMails] = useState<DevMail[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    api
      .get<unknown>("/api/v1/dev/mail")
      .then((d) => {
        setError(null);
        setMails(listOf(d, "messages") as DevMail[]);
      })
      .catch((e: unknown) =>
        setError(e instanceof ApiError && e.status === 404 ? "No dev mailbox here: it exists only in the embedded mode (make dev)." : errorText(e)),
      );
  }, []);
  useEffect(() => {
    load();
    const t = setInterval(load, 3000);
    return () => clearInterval(t);
  }, [load]);
  return (
    <main className="mx-auto w-full max-w-3xl p-4">
      <div className="mb-4 flex items-center gap-2">
        <h1 className="flex-1 text-xl font-semibold">Dev mailbox</h1>
        <Button variant="secondary" onClick={load}>Refresh</Button>
        <ThemeToggle />
      </div>
      {error && <Alert>{error}</Alert>}
      {!mails && !error && <Spinner />}
      {mails?.length === 0 && <p className="text-gray-700 dark:text-gray-300">No mail yet.</p>}
      <ul className="flex flex-col gap-3">
        {mails?.map((m, i) => (
          <li key={m.id}>
            <details open={i === 0} className="rounded-lg border border-gray-200 p-3 dark:border-gray-800">
              <summary className="cursor-pointer">
                <span className="font-medium">{m.subject}</span>
                <span className="block text-sm text-gray-700 dark:text-gray-300">
                  to {m.to} · from {m.from}
                  {m.create_time ? ` · ${new Date(m.create_time).toLocaleString()}` : ""}
                </span>
              </summary>
              <p className="msg-body mt-2 whitespace-pre-wrap text-sm">
                <MailText text={m.text} />
              </p>
            </details>
          </li>
        ))}
      </ul>
    </main>
  );
}
