"use client";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { Spinner } from "@/components/ui";
import { useMe } from "@/lib/session";

export default function Home() {
  const me = useMe();
  const router = useRouter();
  useEffect(() => {
    if (me.status === "signed-in") router.replace("/rooms");
    else if (me.status === "signed-out") router.replace("/login");
  }, [me, router]);
  return (
    <main>
      <h1 className="sr-only">ChatMesh</h1>
      {me.status === "error" ? <p role="alert" className="p-4">{me.message}</p> : <Spinner />}
    </main>
  );
}
