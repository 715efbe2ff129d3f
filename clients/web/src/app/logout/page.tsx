"use client";
import Link from "next/link";
import { useEffect, useState } from "react";
import { AuthCard, Spinner, linkClass } from "@/components/ui";
import { api } from "@/lib/api";
import { setMe } from "@/lib/session";
import { disconnect } from "@/lib/store";

export default function LogoutPage() {
  const [done, setDone] = useState(false);
  useEffect(() => {
    void api
      .post("/api/v1/auth/logout")
      .catch(() => undefined)
      .finally(() => {
        disconnect();
        setMe(null);
        setDone(true);
      });
  }, []);
  return (
    <AuthCard title="Log out">
      {done ? (
        <p>
          You are logged out. <Link className={linkClass} href="/login">Log in again</Link>
        </p>
      ) : (
        <Spinner label="Logging out…" />
      )}
    </AuthCard>
  );
}
