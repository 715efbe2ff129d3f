"use client";
import Link from "next/link";
import { Suspense } from "react";
import { AppShell } from "@/components/AppShell";
import { Alert, linkClass } from "@/components/ui";
import { useMe } from "@/lib/session";

function Welcome() {
  const me = useMe();
  const unverified = me.status === "signed-in" && !me.user.email_verified;
  return (
    <div className="flex flex-1 flex-col items-center justify-center gap-4 p-6 text-center">
      <h1 className="text-xl font-semibold">Welcome{me.status === "signed-in" ? `, ${me.user.display_name}` : ""}</h1>
      {unverified && <Alert kind="info">We sent you an email: open its link to verify your address.</Alert>}
      <p className="max-w-md text-gray-700 dark:text-gray-300">
        Pick a room on the left, <Link className={linkClass} href="/browse">browse public rooms</Link>, or{" "}
        <Link className={linkClass} href="/people">find people</Link> to message.
      </p>
    </div>
  );
}

export default function RoomsPage() {
  return (
    <Suspense>
      <AppShell title="Rooms" list="main">
        <Welcome />
      </AppShell>
    </Suspense>
  );
}
