"use client";
import Link from "next/link";
import { Suspense } from "react";
import { AppShell } from "@/components/AppShell";
import { RoomList } from "@/components/RoomList";
import { Alert, linkClass } from "@/components/ui";
import { useMe } from "@/lib/session";

function Welcome() {
  const me = useMe();
  const unverified = me.status === "signed-in" && !me.user.email_verified;
  const greeting = `Welcome${me.status === "signed-in" ? `, ${me.user.display_name}` : ""}`;
  const notice = unverified && <Alert kind="info">We sent you an email: open its link to verify your address.</Alert>;
  return (
    <>
      {/* phones: the room list is this page */}
      <div className="flex min-h-0 flex-1 flex-col md:hidden">
        <h1 className="px-3 pt-3 text-lg font-semibold">{greeting}</h1>
        {notice && <div className="px-3 pt-2">{notice}</div>}
        <RoomList />
      </div>
      <div className="hidden flex-1 flex-col items-center justify-center gap-4 p-6 text-center md:flex">
      <h1 className="text-xl font-semibold">{greeting}</h1>
      {notice}
      <p className="max-w-md text-gray-700 dark:text-gray-300">
        Pick a room on the left, <Link className={linkClass} href="/browse">browse public rooms</Link>, or{" "}
        <Link className={linkClass} href="/people">find people</Link> to message.
      </p>
      </div>
    </>
  );
}

export default function RoomsPage() {
  return (
    <Suspense>
      <AppShell title="Rooms">
        <Welcome />
      </AppShell>
    </Suspense>
  );
}
