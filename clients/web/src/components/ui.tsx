"use client";
import Link from "next/link";
import { initials } from "@/lib/text";
import { useId, useState, type ButtonHTMLAttributes, type InputHTMLAttributes, type ReactNode } from "react";

export function Button({ variant = "primary", className = "", ...props }: ButtonHTMLAttributes<HTMLButtonElement> & { variant?: "primary" | "secondary" | "danger" | "ghost" }) {
  const styles = {
    primary: "bg-indigo-600 text-white hover:bg-indigo-700 disabled:bg-indigo-400",
    secondary: "border border-gray-300 bg-white text-gray-900 hover:bg-gray-50 dark:border-gray-600 dark:bg-gray-800 dark:text-gray-100 dark:hover:bg-gray-700",
    danger: "bg-red-700 text-white hover:bg-red-800",
    ghost: "text-gray-700 hover:bg-gray-100 dark:text-gray-200 dark:hover:bg-gray-800",
  }[variant];
  return (
    <button
      type="button"
      {...props}
      className={`inline-flex min-h-9 items-center justify-center gap-1 rounded-md px-3 py-1.5 text-sm font-medium focus:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 focus-visible:ring-offset-2 disabled:cursor-not-allowed dark:focus-visible:ring-offset-gray-900 ${styles} ${className}`}
    />
  );
}

export function Field({ label, hint, error, ...props }: InputHTMLAttributes<HTMLInputElement> & { label: string; hint?: string; error?: string }) {
  const id = useId();
  return (
    <div className="flex flex-col gap-1">
      <label htmlFor={id} className="text-sm font-medium text-gray-800 dark:text-gray-200">
        {label}
      </label>
      <input
        id={id}
        aria-invalid={error ? true : undefined}
        aria-describedby={hint || error ? `${id}-d` : undefined}
        {...props}
        className="rounded-md border border-gray-300 bg-white px-3 py-2 text-base text-gray-900 placeholder:text-gray-500 focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500 dark:border-gray-600 dark:bg-gray-900 dark:text-gray-100 dark:placeholder:text-gray-400"
      />
      {(hint || error) && (
        <p id={`${id}-d`} className={`text-xs ${error ? "text-red-700 dark:text-red-400" : "text-gray-600 dark:text-gray-400"}`}>
          {error ?? hint}
        </p>
      )}
    </div>
  );
}

export function Alert({ kind = "error", children }: { kind?: "error" | "info" | "success"; children: ReactNode }) {
  const styles = {
    error: "border-red-300 bg-red-50 text-red-900 dark:border-red-800 dark:bg-red-950 dark:text-red-100",
    info: "border-blue-300 bg-blue-50 text-blue-900 dark:border-blue-800 dark:bg-blue-950 dark:text-blue-100",
    success: "border-green-300 bg-green-50 text-green-900 dark:border-green-800 dark:bg-green-950 dark:text-green-100",
  }[kind];
  return (
    <div role={kind === "error" ? "alert" : "status"} className={`rounded-md border px-3 py-2 text-sm ${styles}`}>
      {children}
    </div>
  );
}

export function AuthCard({ title, children, footer }: { title: string; children: ReactNode; footer?: ReactNode }) {
  return (
    <main className="flex min-h-full items-center justify-center px-4 py-10">
      <div className="w-full max-w-sm">
        <p className="mb-6 text-center text-2xl font-bold text-indigo-700 dark:text-indigo-300">
          <Link href="/">ChatMesh</Link>
        </p>
        <div className="rounded-lg border border-gray-200 bg-white p-6 shadow-sm dark:border-gray-800 dark:bg-gray-900">
          <h1 className="mb-4 text-xl font-semibold">{title}</h1>
          {children}
        </div>
        {footer && <div className="mt-4 text-center text-sm text-gray-700 dark:text-gray-300">{footer}</div>}
      </div>
    </main>
  );
}

export const linkClass = "font-medium text-indigo-700 underline-offset-2 hover:underline dark:text-indigo-300";

export function Spinner({ label = "Loading…" }: { label?: string }) {
  return (
    <p role="status" className="p-4 text-sm text-gray-600 dark:text-gray-400">
      {label}
    </p>
  );
}

/** A person's picture: their avatar_url (https only) or, when there is none or it fails
 * to load, their initials on a colour derived from the name. Decorative: the name is
 * always next to it in text. */
export function Avatar({ name, src, size = 36, presence }: { name: string; src?: string | null; size?: number; presence?: "online" | "away" | "offline" }) {
  const [failed, setFailed] = useState<string | null>(null);
  const letters = initials(name);
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  const image = src && src.startsWith("https://") && failed !== src ? src : null;
  return (
    <span className="relative inline-flex shrink-0" aria-hidden="true" data-avatar={image ? "image" : "initials"}>
      {image ? (
        // eslint-disable-next-line @next/next/no-img-element -- a static export: no image optimizer to hand this to
        <img
          src={image}
          alt=""
          width={size}
          height={size}
          loading="lazy"
          decoding="async"
          referrerPolicy="no-referrer"
          onError={() => setFailed(image)}
          className="rounded-full object-cover"
          style={{ width: size, height: size }}
        />
      ) : (
        <span
          className="inline-flex items-center justify-center rounded-full font-semibold text-white"
          style={{ width: size, height: size, backgroundColor: `hsl(${h} 55% 28%)`, fontSize: size * (letters.length > 1 ? 0.36 : 0.42) }}
        >
          {letters}
        </span>
      )}
      {presence && <PresenceDot status={presence} className="absolute -bottom-0.5 -right-0.5" />}
    </span>
  );
}


export function PresenceDot({ status, className = "" }: { status: "online" | "away" | "offline"; className?: string }) {
  const color = status === "online" ? "bg-green-500" : status === "away" ? "bg-amber-400" : "bg-gray-400";
  return <span className={`inline-block h-3 w-3 rounded-full border-2 border-white dark:border-gray-900 ${color} ${className}`} title={status} />;
}
