"use client";
import { useSearchParams } from "next/navigation";
import { Suspense } from "react";
import { AppShell } from "@/components/AppShell";
import { RoomView } from "@/components/RoomView";
import { Alert } from "@/components/ui";

function Room() {
  const params = useSearchParams();
  const id = params.get("id");
  if (!id) return <div className="p-4"><Alert>No room selected.</Alert></div>;
  return <RoomView key={id} roomId={id} focusId={params.get("message")} />;
}

export default function RoomPage() {
  return (
    <Suspense>
      <AppShell title="Room">
        <Room />
      </AppShell>
    </Suspense>
  );
}
