"use client";
import Link from "next/link";
import { usePathname, useRouter, useSearchParams } from "next/navigation";
import { useEffect, useState, type ReactNode } from "react";
import { api } from "@/lib/api";
import { setMe, useMe } from "@/lib/session";
import { connect, disconnect, dismissToast, loadRooms, useChat } from "@/lib/store";
import { ThemeToggle } from "./ThemeToggle";
import { RoomList } from "./RoomList";
import { Spinner } from "./ui";

/** Pages of the signed-in app. Below the md breakpoint the room list is hidden; the
 * /rooms page shows it as its content instead. */
export function AppShell({ children, title }: { children: ReactNode; title: string }) {
  const me = useMe();
  const router = useRouter();
  const pathname = usePathname();
  const params = useSearchParams();

  useEffect(() => {
    document.title = `${title} · ChatMesh`;
  }, [title]);

  useEffect(() => {
    if (me.status === "signed-out") {
      const here = pathname + (params.size ? `?${params.toString()}` : "");
      router.replace(`/login?next=${encodeURIComponent(here)}`);
    }
    if (me.status === "signed-in") {
      connect(me.user);
      void loadRooms().catch(() => undefined);
    }
  }, [me, router, pathname, params]);

  if (me.status !== "signed-in") {
    return (
      <main className="p-6">
        {me.status === "error" ? <p role="alert">{me.message}</p> : <Spinner label={me.status === "signed-out" ? "Redirecting to log in…" : "Loading…"} />}
      </main>
    );
  }

  return (
    <div className="flex h-dvh flex-col">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:p-2 focus:text-black">
        Skip to content
      </a>
      <Header name={me.user.display_name || me.user.username} />
      <ConnectionBanner />
      <div className="flex min-h-0 flex-1">
        <nav
          aria-label="Rooms and direct messages"
          className={`hidden min-h-0 flex-col border-r border-gray-200 bg-gray-50 md:flex md:w-72 md:shrink-0 dark:border-gray-800 dark:bg-gray-900`}
        >
          <RoomList />
        </nav>
        <main id="main" tabIndex={-1} className="flex min-h-0 min-w-0 flex-1 flex-col focus:outline-none">
          {children}
        </main>
      </div>
      <Toasts />
    </div>
  );
}

function Header({ name }: { name: string }) {
  const router = useRouter();
  const pathname = usePathname();
  const nav = [
    { href: "/rooms", label: "Rooms", active: ["/rooms", "/room", "/browse", "/new-message"].includes(pathname) },
    { href: "/people", label: "People", active: ["/people", "/friends", "/user", "/profile"].includes(pathname) },
    { href: "/search", label: "Search", active: pathname === "/search" },
  ];
  const logout = async () => {
    await api.post("/api/v1/auth/logout").catch(() => undefined);
    disconnect();
    setMe(null);
    router.replace("/login");
  };
  return (
    <header className="flex h-14 shrink-0 items-center gap-1 border-b border-gray-200 px-2 sm:gap-3 sm:px-4 dark:border-gray-800">
      <Link href="/rooms" className="mr-1 text-lg font-bold text-indigo-700 dark:text-indigo-300" aria-label="ChatMesh home">
        <span aria-hidden="true" className="sm:hidden">CM</span>
        <span className="hidden sm:inline">ChatMesh</span>
      </Link>
      <ul className="flex items-center gap-0.5 text-sm">
        {nav.map((n) => (
          <li key={n.href}>
            <Link
              href={n.href}
              aria-current={n.active ? "page" : undefined}
              className={`rounded-md px-1.5 py-1.5 font-medium sm:px-2 ${n.active ? "bg-indigo-50 text-indigo-800 dark:bg-indigo-950 dark:text-indigo-200" : "text-gray-700 hover:bg-gray-100 dark:text-gray-300 dark:hover:bg-gray-800"}`}
            >
              {n.label}
            </Link>
          </li>
        ))}
      </ul>
      <div className="ml-auto flex items-center gap-1">
        <ThemeToggle />
        <details className="relative">
          <summary className="flex cursor-pointer list-none items-center rounded-md px-2 py-1.5 text-sm font-medium text-gray-800 hover:bg-gray-100 dark:text-gray-200 dark:hover:bg-gray-800">
            <span className="sr-only sm:not-sr-only sm:max-w-40 sm:truncate">{name}</span>
            <span className="sr-only"> (account menu)</span>
            <span aria-hidden="true" className="ml-1">{"☰"}</span>
          </summary>
          <ul className="absolute right-0 z-40 mt-1 w-44 rounded-md border border-gray-200 bg-white py-1 text-sm shadow-lg dark:border-gray-700 dark:bg-gray-900">
            <li><Link className="block px-3 py-2 hover:bg-gray-100 dark:hover:bg-gray-800" href="/profile">Edit profile</Link></li>
            <li><Link className="block px-3 py-2 hover:bg-gray-100 dark:hover:bg-gray-800" href="/friends">Friends</Link></li>
            <li><Link className="block px-3 py-2 hover:bg-gray-100 dark:hover:bg-gray-800" href="/sessions">Sessions</Link></li>
            <NotificationsItem />
            <li>
              <button type="button" onClick={() => void logout()} className="block w-full px-3 py-2 text-left hover:bg-gray-100 dark:hover:bg-gray-800">
                Log out
              </button>
            </li>
          </ul>
        </details>
      </div>
    </header>
  );
}

/** Ask for browser notifications (used for mentions and DMs while the tab is hidden). */
function NotificationsItem() {
  const [permission, setPermission] = useState<string>("unsupported");
  useEffect(() => {
    if (typeof Notification !== "undefined") setPermission(Notification.permission);
  }, []);
  if (permission !== "default") return null;
  return (
    <li>
      <button
        type="button"
        onClick={() => void Notification.requestPermission().then(setPermission)}
        className="block w-full px-3 py-2 text-left hover:bg-gray-100 dark:hover:bg-gray-800"
      >
        Enable notifications
      </button>
    </li>
  );
}

function ConnectionBanner() {
  const status = useChat((s) => s.status);
  if (status !== "reconnecting" && status !== "offline" && status !== "unavailable") return null;
  return (
    <div role="status" className="shrink-0 bg-amber-100 px-4 py-1.5 text-center text-sm font-medium text-amber-950 dark:bg-amber-900 dark:text-amber-50">
      {status === "reconnecting"
        ? "Reconnecting…"
        : status === "unavailable"
          ? "Live updates are unavailable right now; retrying…"
          : "Offline. Reload the page to sign in again."}
    </div>
  );
}

function Toasts() {
  const toasts = useChat((s) => s.toasts);
  return (
    <div aria-live="polite" className="pointer-events-none fixed bottom-4 right-4 z-50 flex w-[min(22rem,calc(100vw-2rem))] flex-col gap-2">
      {toasts.map((t) => (
        <div key={t.id} className="pointer-events-auto rounded-lg border border-gray-200 bg-white p-3 shadow-lg dark:border-gray-700 dark:bg-gray-900">
          <div className="flex items-start gap-2">
            <div className="min-w-0 flex-1">
              {t.href ? (
                <Link href={t.href} className="block" onClick={() => dismissToast(t.id)}>
                  <span className="block text-sm font-semibold">{t.title}</span>
                  <span className="msg-body line-clamp-2 block text-sm text-gray-700 dark:text-gray-300">{t.body}</span>
                </Link>
              ) : (
                <>
                  <p className="text-sm font-semibold">{t.title}</p>
                  <p className="msg-body text-sm text-gray-700 dark:text-gray-300">{t.body}</p>
                </>
              )}
            </div>
            <button type="button" onClick={() => dismissToast(t.id)} aria-label="Dismiss notification" className="rounded p-1 text-gray-600 hover:bg-gray-100 dark:text-gray-300 dark:hover:bg-gray-800">
              <span aria-hidden="true">✕</span>
            </button>
          </div>
        </div>
      ))}
    </div>
  );
}
