"use client";
import { useEffect, useMemo, useRef, useState, type KeyboardEvent } from "react";
import { completeMention, mentionAt } from "@/lib/text";
import { sendMessage, sendTyping } from "@/lib/store";
import type { Profile, TimelineMessage } from "@/lib/types";

interface Props {
  roomId: string;
  roomName: string;
  replyTo: TimelineMessage | null;
  replyName: string;
  onCancelReply: () => void;
  onEditLast: () => void;
  candidates: Profile[];
}

export function Composer({ roomId, roomName, replyTo, replyName, onCancelReply, onEditLast, candidates }: Props) {
  const [value, setValue] = useState("");
  const [caret, setCaret] = useState(0);
  const [active, setActive] = useState(0);
  const ref = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    if (replyTo) ref.current?.focus();
  }, [replyTo]);
  useEffect(() => {
    setValue("");
  }, [roomId]);

  const mention = mentionAt(value, caret);
  const suggestions = useMemo(() => {
    if (!mention) return [];
    const q = mention.query.toLowerCase();
    return candidates.filter((p) => p.username.toLowerCase().startsWith(q) || p.display_name.toLowerCase().startsWith(q)).slice(0, 6);
  }, [mention, candidates]);
  const open = suggestions.length > 0;

  const pick = (p: Profile) => {
    const next = completeMention(value, caret, p.username);
    setValue(next.text);
    setCaret(next.caret);
    requestAnimationFrame(() => {
      ref.current?.focus();
      ref.current?.setSelectionRange(next.caret, next.caret);
    });
  };

  const submit = () => {
    const body = value.trim();
    if (!body) return;
    sendMessage(roomId, body, replyTo?.id ?? null);
    setValue("");
    setCaret(0);
    onCancelReply();
  };

  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (open) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        setActive((a) => (a + (e.key === "ArrowDown" ? 1 : suggestions.length - 1)) % suggestions.length);
        return;
      }
      if (e.key === "Enter" || e.key === "Tab") {
        e.preventDefault();
        const p = suggestions[Math.min(active, suggestions.length - 1)];
        if (p) pick(p);
        return;
      }
    }
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    } else if (e.key === "Escape" && replyTo) {
      onCancelReply();
    } else if (e.key === "ArrowUp" && value === "") {
      e.preventDefault();
      onEditLast();
    }
  };

  return (
    <div className="shrink-0 border-t border-gray-200 p-2 sm:p-3 dark:border-gray-800">
      {replyTo && (
        <div className="mb-2 flex items-center gap-2 rounded-md bg-gray-100 px-2 py-1 text-sm dark:bg-gray-800">
          <span className="min-w-0 flex-1 truncate">
            Replying to <span className="font-semibold">{replyName}</span>: {replyTo.body}
          </span>
          <button type="button" onClick={onCancelReply} aria-label="Cancel reply" className="rounded px-1 hover:bg-gray-200 dark:hover:bg-gray-700">
            <span aria-hidden="true">✕</span>
          </button>
        </div>
      )}
      <div className="relative flex items-end gap-2">
        {open && (
          <ul id="mention-list" role="listbox" aria-label="Mention someone" className="absolute bottom-full left-0 z-30 mb-1 w-64 rounded-md border border-gray-200 bg-white py-1 shadow-lg dark:border-gray-700 dark:bg-gray-900">
            {suggestions.map((p, i) => (
              <li
                key={p.id}
                id={`mention-${p.id}`}
                role="option"
                aria-selected={i === active}
                onMouseDown={(e) => {
                  e.preventDefault();
                  pick(p);
                }}
                className={`cursor-pointer px-3 py-1.5 text-sm ${i === active ? "bg-indigo-100 dark:bg-indigo-900" : ""}`}
              >
                <span className="font-medium">{p.display_name}</span> <span className="text-gray-600 dark:text-gray-400">@{p.username}</span>
              </li>
            ))}
          </ul>
        )}
        <label htmlFor="composer" className="sr-only">Message {roomName}</label>
        <textarea
          id="composer"
          ref={ref}
          value={value}
          rows={Math.min(6, Math.max(1, value.split("\n").length))}
          placeholder={`Message ${roomName}`}
          maxLength={10000}
          aria-autocomplete="list"
          aria-controls={open ? "mention-list" : undefined}
          aria-activedescendant={open && suggestions[active] ? `mention-${suggestions[active].id}` : undefined}
          onChange={(e) => {
            setValue(e.target.value);
            setCaret(e.target.selectionStart);
            setActive(0);
            if (e.target.value.trim()) sendTyping(roomId);
          }}
          onSelect={(e) => setCaret(e.currentTarget.selectionStart)}
          onKeyDown={onKey}
          className="min-h-11 flex-1 resize-none rounded-md border border-gray-300 bg-white px-3 py-2.5 text-base placeholder:text-gray-500 focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500 dark:border-gray-600 dark:bg-gray-900 dark:placeholder:text-gray-400"
        />
        <button type="button" onClick={submit} disabled={!value.trim()} className="min-h-11 rounded-md bg-indigo-600 px-4 font-medium text-white hover:bg-indigo-700 disabled:bg-indigo-400 dark:disabled:bg-indigo-800 dark:disabled:text-gray-300">
          Send
        </button>
      </div>
    </div>
  );
}
