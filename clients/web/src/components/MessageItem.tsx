"use client";
import { memo, useEffect, useRef, useState, type KeyboardEvent } from "react";
import { errorText } from "@/lib/api";
import { deleteMessage, discardSend, displayName, editMessage, pushToast, retrySend, toggleReaction, useChat } from "@/lib/store";
import type { TimelineMessage, User } from "@/lib/types";
import { MessageBody } from "./MessageBody";
import { Avatar } from "./ui";

export const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];

interface Props {
  message: TimelineMessage;
  grouped: boolean;
  me: User;
  replyTo: TimelineMessage | null;
  editing: boolean;
  seenBy: string[];
  onReply: (m: TimelineMessage) => void;
  onEdit: (id: string | null) => void;
  onJump: (id: string) => void;
  names: Record<string, string>;
}

function time(iso: string) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

function MessageItemImpl({ message: m, grouped, me, replyTo, editing, seenBy, onReply, onEdit, onJump, names }: Props) {
  const mine = m.sender_id === me.id;
  const name = names[m.sender_id] ?? displayName(m.sender_id);
  const deleted = Boolean(m.deleted_at);
  const [picker, setPicker] = useState(false);
  const avatar = useChat((s) => s.profiles[m.sender_id]?.avatar_url);

  const react = (emoji: string) => {
    setPicker(false);
    toggleReaction(m.room_id, m.id, emoji).catch((e: unknown) => pushToast({ title: "Could not react", body: errorText(e) }));
  };
  const remove = () => {
    if (!window.confirm("Delete this message for everyone?")) return;
    deleteMessage(m.room_id, m.id).catch((e: unknown) => pushToast({ title: "Could not delete", body: errorText(e) }));
  };

  return (
    <li
      id={`msg-${m.id}`}
      data-message-id={m.id}
      data-state={m.state}
      aria-label={grouped ? undefined : `${name} at ${time(m.created_at)}`}
      className={`group relative flex gap-3 px-3 ${grouped ? "py-0.5" : "pt-2 pb-0.5"} hover:bg-gray-50 focus-within:bg-gray-50 dark:hover:bg-gray-900 dark:focus-within:bg-gray-900`}
    >
      <div className="w-9 shrink-0">{!grouped && <Avatar name={name} src={avatar} />}</div>
      <div className="min-w-0 flex-1">
        {!grouped && (
          <p className="flex items-baseline gap-2">
            <span className="font-semibold">{name}</span>
            <time dateTime={m.created_at} className="text-xs text-gray-600 dark:text-gray-400">{time(m.created_at)}</time>
          </p>
        )}
        {m.reply_to && (
          <button
            type="button"
            onClick={() => onJump(m.reply_to!)}
            className="mb-0.5 flex max-w-full items-center gap-1 border-l-4 border-gray-300 pl-2 text-left text-sm text-gray-700 hover:border-indigo-500 dark:border-gray-600 dark:text-gray-300"
          >
            <span className="sr-only">Reply to</span>
            {replyTo ? (
              <span className="truncate">
                <span className="font-medium">{names[replyTo.sender_id] ?? displayName(replyTo.sender_id)}:</span> {replyTo.deleted_at ? "deleted message" : replyTo.body}
              </span>
            ) : (
              <span className="italic">an earlier message</span>
            )}
          </button>
        )}
        {editing ? (
          <EditBox message={m} onDone={() => onEdit(null)} />
        ) : deleted ? (
          <p className="text-sm italic text-gray-600 dark:text-gray-400">This message was deleted.</p>
        ) : (
          <p className={`msg-body ${m.state === "pending" ? "text-gray-600 dark:text-gray-400" : ""}`}>
            <MessageBody body={m.body} myUsername={me.username} />
            {m.edited_at && <span className="ml-1 text-xs text-gray-600 dark:text-gray-400">(edited)</span>}
          </p>
        )}
        {m.state === "pending" && <p className="text-xs text-gray-600 dark:text-gray-400" role="status">Sending…</p>}
        {m.state === "failed" && (
          <p className="flex flex-wrap items-center gap-2 text-xs text-red-700 dark:text-red-400" role="alert">
            Not sent.
            <button type="button" className="font-semibold underline" onClick={() => retrySend(m.room_id, m.client_msg_id)}>Retry</button>
            <button type="button" className="underline" onClick={() => discardSend(m.room_id, m.client_msg_id)}>Discard</button>
          </p>
        )}
        {m.reactions.length > 0 && !deleted && (
          <ul className="mt-1 flex flex-wrap gap-1" aria-label="Reactions">
            {m.reactions.map((r) => {
              const minePressed = r.user_ids.includes(me.id);
              const who = r.user_ids.map((u) => (u === me.id ? "you" : (names[u] ?? displayName(u)))).join(", ");
              return (
                <li key={r.emoji}>
                  <button
                    type="button"
                    aria-pressed={minePressed}
                    aria-label={`${r.emoji} ${r.count}, by ${who}`}
                    title={who}
                    onClick={() => react(r.emoji)}
                    className={`rounded-full border px-2 py-0.5 text-sm ${minePressed ? "border-indigo-500 bg-indigo-50 dark:bg-indigo-950" : "border-gray-300 dark:border-gray-600"}`}
                  >
                    {r.emoji} <span className="text-xs font-semibold">{r.count}</span>
                  </button>
                </li>
              );
            })}
          </ul>
        )}
        {seenBy.length > 0 && <p className="mt-0.5 text-xs text-gray-600 dark:text-gray-400">Seen by {seenBy.join(", ")}</p>}
      </div>
      {!deleted && m.state === "sent" && !editing && (
        <div className="absolute -top-3 right-2 hidden gap-0.5 rounded-md border border-gray-200 bg-white p-0.5 shadow-sm group-hover:flex group-focus-within:flex dark:border-gray-700 dark:bg-gray-800">
          <ToolButton label="Add reaction" onClick={() => setPicker((p) => !p)}>☺</ToolButton>
          <ToolButton label="Reply" onClick={() => onReply(m)}>↩</ToolButton>
          {mine && <ToolButton label="Edit message" onClick={() => onEdit(m.id)}>✎</ToolButton>}
          {mine && <ToolButton label="Delete message" onClick={remove}>🗑</ToolButton>}
          {picker && (
            <div role="group" aria-label="Pick a reaction" className="absolute right-0 top-8 z-20 flex gap-0.5 rounded-md border border-gray-200 bg-white p-1 shadow-lg dark:border-gray-700 dark:bg-gray-800">
              {QUICK_REACTIONS.map((e) => (
                <button key={e} type="button" aria-label={`React with ${e}`} onClick={() => react(e)} className="rounded p-1 text-lg hover:bg-gray-100 dark:hover:bg-gray-700">
                  {e}
                </button>
              ))}
            </div>
          )}
        </div>
      )}
    </li>
  );
}

function ToolButton({ label, onClick, children }: { label: string; onClick: () => void; children: string }) {
  return (
    <button type="button" aria-label={label} title={label} onClick={onClick} className="rounded px-1.5 py-0.5 text-sm text-gray-700 hover:bg-gray-100 dark:text-gray-200 dark:hover:bg-gray-700">
      <span aria-hidden="true">{children}</span>
    </button>
  );
}

function EditBox({ message, onDone }: { message: TimelineMessage; onDone: () => void }) {
  const [value, setValue] = useState(message.body);
  const [busy, setBusy] = useState(false);
  const ref = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (el) {
      el.focus();
      el.setSelectionRange(el.value.length, el.value.length);
    }
  }, []);
  const save = async () => {
    const body = value.trim();
    if (!body || body === message.body) return onDone();
    setBusy(true);
    try {
      await editMessage(message.id, body);
      onDone();
    } catch (e) {
      pushToast({ title: "Could not edit", body: errorText(e) });
      setBusy(false);
    }
  };
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Escape") {
      e.preventDefault();
      onDone();
    } else if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      void save();
    }
  };
  return (
    <div className="flex flex-col gap-1">
      <label className="sr-only" htmlFor={`edit-${message.id}`}>Edit message</label>
      <textarea
        id={`edit-${message.id}`}
        ref={ref}
        value={value}
        disabled={busy}
        onChange={(e) => setValue(e.target.value)}
        onKeyDown={onKey}
        rows={Math.min(8, value.split("\n").length)}
        className="w-full resize-none rounded-md border border-gray-300 bg-white p-2 dark:border-gray-600 dark:bg-gray-900"
      />
      <p className="text-xs text-gray-600 dark:text-gray-400">Enter to save · Esc to cancel</p>
    </div>
  );
}

export const MessageItem = memo(MessageItemImpl);
