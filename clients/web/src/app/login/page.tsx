"use client";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useState, type FormEvent } from "react";
import { Alert, AuthCard, Button, Field, linkClass } from "@/components/ui";
import { api, errorText } from "@/lib/api";
import { safeNext, setMe } from "@/lib/session";
import type { User } from "@/lib/types";

function LoginForm() {
  const router = useRouter();
  const params = useSearchParams();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    if (!String(f.get("login") ?? "").trim() || !String(f.get("password") ?? "")) {
      setError("Enter your email or username and your password.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const res = await api.post<{ user: User }>("/api/v1/auth/login", { login: String(f.get("login") ?? "").trim(), password: String(f.get("password") ?? "") });
      setMe(res.user);
      router.replace(safeNext(params.get("next")));
    } catch (err) {
      setError(errorText(err));
      setBusy(false);
    }
  };
  return (
    <AuthCard
      title="Log in"
      footer={
        <>
          New here? <Link className={linkClass} href="/signup">Create an account</Link>
        </>
      }
    >
      <form onSubmit={(e) => void submit(e)} className="flex flex-col gap-4" noValidate>
        {params.get("reset") === "1" && <Alert kind="success">Your password was changed. Log in with the new one.</Alert>}
        {error && <Alert>{error}</Alert>}
        <Field label="Email or username" name="login" autoComplete="username" required autoFocus />
        <Field label="Password" name="password" type="password" autoComplete="current-password" required />
        <Button type="submit" disabled={busy}>{busy ? "Logging in…" : "Log in"}</Button>
        <Link className={`${linkClass} text-sm`} href="/forgot-password">Forgot your password?</Link>
      </form>
    </AuthCard>
  );
}

export default function LoginPage() {
  return (
    <Suspense>
      <LoginForm />
    </Suspense>
  );
}
