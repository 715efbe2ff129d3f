"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { Alert, AuthCard, Button, Field, linkClass } from "@/components/ui";
import { api, ApiError, errorText } from "@/lib/api";
import { setMe } from "@/lib/session";
import type { User } from "@/lib/types";

export default function SignupPage() {
  const router = useRouter();
  const [error, setError] = useState<string | null>(null);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    setBusy(true);
    setError(null);
    setFieldErrors({});
    try {
      const res = await api.post<{ user?: User } & Partial<User>>("/api/v1/auth/register", {
        email: String(f.get("email") ?? "").trim(),
        username: String(f.get("username") ?? "").trim(),
        display_name: String(f.get("display_name") ?? "").trim(),
        password: String(f.get("password") ?? ""),
      });
      const user = res.user ?? (res.id ? (res as User) : null);
      if (user) setMe(user);
      router.replace("/rooms?welcome=1");
    } catch (err) {
      setError(errorText(err));
      if (err instanceof ApiError && err.details.field && typeof err.details.field === "string") {
        setFieldErrors({ [err.details.field]: err.message });
      }
      setBusy(false);
    }
  };
  return (
    <AuthCard
      title="Create your account"
      footer={
        <>
          Already have an account? <Link className={linkClass} href="/login">Log in</Link>
        </>
      }
    >
      <form onSubmit={(e) => void submit(e)} className="flex flex-col gap-4" noValidate>
        {error && <Alert>{error}</Alert>}
        <Field label="Email" name="email" type="email" autoComplete="email" required error={fieldErrors.email} />
        <Field label="Username" name="username" autoComplete="username" required hint="3 to 32 characters: lowercase letters, digits, dots, dashes, underscores." error={fieldErrors.username} />
        <Field label="Display name" name="display_name" autoComplete="name" required error={fieldErrors.display_name} />
        <Field label="Password" name="password" type="password" autoComplete="new-password" required hint="A long passphrase works well." error={fieldErrors.password} />
        <Button type="submit" disabled={busy}>{busy ? "Creating account…" : "Sign up"}</Button>
      </form>
    </AuthCard>
  );
}
