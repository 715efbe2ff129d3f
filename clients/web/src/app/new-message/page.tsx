"use client";
import { useRouter } from "next/navigation";
import { Suspense, useState } from "react";
import { AppShell } from "@/components/AppShell";
import { UserSearch } from "@/components/UserSearch";
import { Alert, Avatar, Button } from "@/components/ui";
import { errorText } from "@/lib/api";
import { startDm } from "@/lib/people";
import { MAX_DM_OTHERS, toggleSelected } from "@/lib/roles";
import { displayName, useChat } from "@/lib/store";

/** Start a DM with one person or a group DM with several (the same set of people
 * always opens the same conversation). */
function NewMessage() {
  const router = useRouter();
  const profiles = useChat((s) => s.profiles);
  const [selected, setSelected] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      const id = await startDm(selected);
      if (id) router.push(`/room?id=${encodeURIComponent(id)}`);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="mx-auto w-full max-w-2xl overflow-y-auto p-4">
      <h1 className="mb-1 text-xl font-semibold">New message</h1>
      <p className="mb-4 text-sm text-gray-700 dark:text-gray-300">
        Pick one person for a direct message, or up to {MAX_DM_OTHERS} for a group DM.
      </p>
      <section aria-label="Selected people" className="mb-4">
        {selected.length === 0 ? (
          <p className="text-sm text-gray-700 dark:text-gray-300">Nobody selected yet.</p>
        ) : (
          <ul className="flex flex-wrap gap-2">
            {selected.map((id) => {
              const name = displayName(id);
              return (
                <li key={id} className="flex items-center gap-1 rounded-full border border-gray-300 py-0.5 pl-0.5 pr-1 text-sm dark:border-gray-600">
                  <Avatar name={name} src={profiles[id]?.avatar_url} size={24} />
                  <span>{name}</span>
                  <button
                    type="button"
                    onClick={() => setSelected((s) => s.filter((x) => x !== id))}
                    aria-label={`Remove ${name} from the selection`}
                    className="rounded-full px-1 text-gray-700 hover:bg-gray-100 dark:text-gray-300 dark:hover:bg-gray-800"
                  >
                    <span aria-hidden="true">✕</span>
                  </button>
                </li>
              );
            })}
          </ul>
        )}
      </section>
      {error && <Alert>{error}</Alert>}
      <div className="mb-6 mt-2">
        <Button onClick={() => void start()} disabled={busy || selected.length === 0}>
          {selected.length > 1 ? `Start group DM (${selected.length + 1} people)` : "Start conversation"}
        </Button>
      </div>
      <UserSearch
        label="Find people"
        action={(p) => {
          const picked = selected.includes(p.id);
          return {
            label: picked ? "Selected" : "Select",
            ariaLabel: `Select ${p.display_name}`,
            pressed: picked,
            disabled: !picked && selected.length >= MAX_DM_OTHERS,
            run: () => setSelected((s) => toggleSelected(s, p.id)),
          };
        }}
      />
    </div>
  );
}

export default function NewMessagePage() {
  return (
    <Suspense>
      <AppShell title="New message">
        <NewMessage />
      </AppShell>
    </Suspense>
  );
}
