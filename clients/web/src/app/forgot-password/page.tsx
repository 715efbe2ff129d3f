"use client";
import Link from "next/link";
import { useState, type FormEvent } from "react";
import { Alert, AuthCard, Button, Field, linkClass } from "@/components/ui";
import { api, errorText } from "@/lib/api";

export default function ForgotPasswordPage() {
  const [sent, setSent] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const email = String(new FormData(e.currentTarget).get("email") ?? "").trim();
    setBusy(true);
    setError(null);
    try {
      await api.post("/api/v1/auth/password-reset/request", { email });
      setSent(true);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <AuthCard title="Reset your password" footer={<Link className={linkClass} href="/login">Back to log in</Link>}>
      {sent ? (
        <Alert kind="success">If an account uses that address, we sent it a link to choose a new password.</Alert>
      ) : (
        <form onSubmit={(e) => void submit(e)} className="flex flex-col gap-4" noValidate>
          {error && <Alert>{error}</Alert>}
          <Field label="Email" name="email" type="email" autoComplete="email" required />
          <Button type="submit" disabled={busy}>Send reset link</Button>
        </form>
      )}
    </AuthCard>
  );
}
