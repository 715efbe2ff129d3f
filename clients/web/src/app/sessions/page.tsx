"use client";
import { useRouter } from "next/navigation";
import { Suspense, useCallback, useEffect, useState } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, Button, Spinner } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { listOf } from "@/lib/normalize";
import { setMe } from "@/lib/session";
import { disconnect } from "@/lib/store";
import type { Session } from "@/lib/types";

function describeAgent(ua: string): string {
  if (!ua) return "Unknown device";
  const browser = /Edg\//.test(ua) ? "Edge" : /Chrome\//.test(ua) ? "Chrome" : /Firefox\//.test(ua) ? "Firefox" : /Safari\//.test(ua) ? "Safari" : ua.split(" ")[0] ?? ua;
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows" : /Mac OS X/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : "";
  return os ? `${browser} on ${os}` : browser;
}

function Sessions() {
  const router = useRouter();
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = useCallback(() => {
    api
      .get<unknown>("/api/v1/auth/sessions")
      .then((d) => setSessions(listOf(d, "sessions") as Session[]))
      .catch((e: unknown) => setError(errorText(e)));
  }, []);
  useEffect(load, [load]);
  const revoke = async (s: Session) => {
    setError(null);
    try {
      await api.del(`/api/v1/auth/sessions/${encodeURIComponent(s.id)}`);
      if (s.current) {
        disconnect();
        setMe(null);
        router.replace("/login");
        return;
      }
      load();
    } catch (e) {
      setError(errorText(e));
    }
  };
  return (
    <div className="mx-auto w-full max-w-2xl overflow-y-auto p-4">
      <h1 className="mb-1 text-xl font-semibold">Sessions</h1>
      <p className="mb-4 text-sm text-gray-700 dark:text-gray-300">Devices signed in to your account. Revoke any you do not recognise.</p>
      {error && <Alert>{error}</Alert>}
      {!sessions && !error && <Spinner />}
      <ul className="flex flex-col gap-2">
        {sessions?.map((s) => (
          <li key={s.id} className="flex flex-wrap items-center gap-3 rounded-lg border border-gray-200 p-3 dark:border-gray-800">
            <div className="min-w-0 flex-1">
              <p className="font-medium">
                {describeAgent(s.user_agent)}
                {s.current && <span className="ml-2 whitespace-nowrap rounded bg-green-100 px-1.5 py-0.5 text-xs font-semibold text-green-900 dark:bg-green-900 dark:text-green-100">This device</span>}
              </p>
              <p className="text-sm text-gray-700 dark:text-gray-300">
                {s.ip_address || "unknown address"} · signed in {new Date(s.created_at).toLocaleString()} · last active {new Date(s.last_used_at).toLocaleString()}
              </p>
            </div>
            <Button variant={s.current ? "secondary" : "danger"} onClick={() => void revoke(s)} aria-label={s.current ? "Log out here (this device)" : `Revoke ${describeAgent(s.user_agent)}, signed in ${new Date(s.created_at).toLocaleString()}`}>
              {s.current ? "Log out here" : "Revoke"}
            </Button>
          </li>
        ))}
      </ul>
    </div>
  );
}

export default function SessionsPage() {
  return (
    <Suspense>
      <AppShell title="Sessions">
        <Sessions />
      </AppShell>
    </Suspense>
  );
}
