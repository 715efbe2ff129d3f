"use client";
import Link from "next/link";
import { useSearchParams } from "next/navigation";
import { Suspense, useEffect, useRef, useState } from "react";
import { Alert, AuthCard, Spinner, linkClass } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { loadMe } from "@/lib/session";

function Verify() {
  const params = useSearchParams();
  const token = params.get("token");
  const [state, setState] = useState<{ kind: "busy" } | { kind: "ok" } | { kind: "error"; message: string }>({ kind: "busy" });
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    if (!token) {
      setState({ kind: "error", message: "This link has no token. Open the link from the email again." });
      return;
    }
    api
      .post("/api/v1/auth/verify-email", { token })
      .then(() => {
        setState({ kind: "ok" });
        void loadMe(true);
      })
      .catch((e: unknown) => setState({ kind: "error", message: errorText(e) }));
  }, [token]);
  return (
    <AuthCard title="Verify your email">
      {state.kind === "busy" && <Spinner label="Verifying…" />}
      {state.kind === "ok" && (
        <div className="flex flex-col gap-3">
          <Alert kind="success">Your email address is verified.</Alert>
          <Link className={linkClass} href="/rooms">Continue to ChatMesh</Link>
        </div>
      )}
      {state.kind === "error" && (
        <div className="flex flex-col gap-3">
          <Alert>{state.message}</Alert>
          <Link className={linkClass} href="/login">Log in</Link>
        </div>
      )}
    </AuthCard>
  );
}

export default function VerifyEmailPage() {
  return (
    <Suspense>
      <Verify />
    </Suspense>
  );
}
