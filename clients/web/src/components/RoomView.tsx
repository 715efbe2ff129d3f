"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import { api, errorText } from "@/lib/api";
import { typingUsers } from "@/lib/chatState";
import { closeRoom, displayName, fetchMembers, forgetRoom, joinRoom, loadMembers, loadOlder, markVisibleRead, openRoom, roomTitle, useChat } from "@/lib/store";
import { isLocal, layout } from "@/lib/timeline";
import type { Profile, Room, TimelineMessage } from "@/lib/types";
import { Composer } from "./Composer";
import { MembersPanel } from "./MembersPanel";
import { MessageItem } from "./MessageItem";
import { Alert, Spinner } from "./ui";

const NOBODY: string[] = [];

export function RoomView({ roomId, focusId }: { roomId: string; focusId: string | null }) {
  const s = useChat((x) => x);
  const room = s.rooms[roomId];
  const timeline = s.timelines[roomId];
  const me = s.me;
  const router = useRouter();
  const [error, setError] = useState<string | null>(null);
  const [replyTo, setReplyTo] = useState<TimelineMessage | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [loadingOlder, setLoadingOlder] = useState(false);
  // a public room opened by link that the user has not joined
  const [preview, setPreview] = useState<Room | null>(null);
  const [atBottom, setAtBottom] = useState(true);
  const [showMembers, setShowMembers] = useState(false);
  const [unseen, setUnseen] = useState(0);
  // the read marker when the room was opened: where the "new messages" divider goes
  const [dividerSeq, setDividerSeq] = useState<number | null>(null);
  const scroller = useRef<HTMLDivElement>(null);
  const topSentinel = useRef<HTMLDivElement>(null);
  const prevHeight = useRef<number | null>(null);
  const lastCount = useRef(0);

  useEffect(() => {
    setError(null);
    setReplyTo(null);
    setEditing(null);
    setDividerSeq(null);
    setPreview(null);
    lastCount.current = 0;
    let cancelled = false;
    void loadMembers(roomId).then((room) => {
      if (cancelled) return;
      if (room && room.is_member === false) setPreview(room);
      else {
        openRoom(roomId).catch((e: unknown) => setError(errorText(e)));
        // read receipts and mention candidates from the start, not only from live events
        fetchMembers(roomId).catch(() => undefined);
      }
    });
    return () => {
      cancelled = true;
      closeRoom(roomId);
    };
  }, [roomId]);

  useEffect(() => {
    if (room && dividerSeq === null && room.unread_count > 0) setDividerSeq(room.last_read_seq);
  }, [room, dividerSeq]);

  const messages = useMemo(() => timeline?.messages ?? [], [timeline]);
  const items = useMemo(() => (me ? layout(messages, { lastReadSeq: dividerSeq, myId: me.id }) : []), [messages, dividerSeq, me]);
  const byId = useMemo(() => new Map(messages.map((m) => [m.id, m])), [messages]);

  const names = useMemo(() => {
    const n: Record<string, string> = {};
    for (const [id, p] of Object.entries(s.profiles)) n[id] = p.display_name || p.username;
    if (me) n[me.id] = me.display_name || me.username;
    return n;
  }, [s.profiles, me]);

  // keep pinned to the bottom when new messages arrive; keep position when older load
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (prevHeight.current !== null) {
      el.scrollTop += el.scrollHeight - prevHeight.current;
      prevHeight.current = null;
    } else if (lastCount.current === 0 && messages.length > 0) {
      // first paint of the room: start at the first unread message, else at the bottom
      const divider = document.getElementById("new-messages");
      if (divider && divider.offsetTop > el.clientHeight / 2) el.scrollTop = divider.offsetTop - 8;
      else el.scrollTop = el.scrollHeight;
    } else if (atBottom) {
      el.scrollTop = el.scrollHeight;
    } else if (messages.length > lastCount.current) {
      const mineLast = messages.at(-1)?.sender_id === me?.id;
      if (mineLast) el.scrollTop = el.scrollHeight;
      else setUnseen((u) => u + messages.length - lastCount.current);
    }
    lastCount.current = messages.length;
  }, [messages, atBottom, me]);

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    const bottom = el.scrollHeight - el.scrollTop - el.clientHeight < 48;
    if (bottom !== atBottom) setAtBottom(bottom);
    if (bottom) {
      setUnseen(0);
      markVisibleRead(roomId);
    }
  };

  const older = useCallback(async () => {
    if (loadingOlder || !timeline?.loaded || !timeline.hasMore) return;
    setLoadingOlder(true);
    prevHeight.current = scroller.current?.scrollHeight ?? null;
    try {
      const n = await loadOlder(roomId);
      if (n === 0) prevHeight.current = null;
    } catch (e) {
      prevHeight.current = null;
      setError(errorText(e));
    } finally {
      setLoadingOlder(false);
    }
  }, [loadingOlder, timeline, roomId]);

  useEffect(() => {
    const el = topSentinel.current;
    if (!el) return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) void older();
    }, { root: scroller.current, rootMargin: "200px 0px 0px 0px" });
    io.observe(el);
    return () => io.disconnect();
  }, [older]);

  const jumpTo = useCallback((id: string) => {
    const el = document.getElementById(`msg-${id}`);
    if (!el) return;
    el.scrollIntoView({ block: "center", behavior: "smooth" });
    el.classList.add("ring-2", "ring-amber-400");
    setTimeout(() => el.classList.remove("ring-2", "ring-amber-400"), 2000);
  }, []);

  useEffect(() => {
    if (focusId && byId.has(focusId)) jumpTo(focusId);
  }, [focusId, byId, jumpTo]);

  const jumpToLatest = () => {
    const el = scroller.current;
    if (el) el.scrollTo({ top: el.scrollHeight, behavior: "smooth" });
    setUnseen(0);
  };

  const editLast = () => {
    if (!me) return;
    const last = [...messages].reverse().find((m) => m.sender_id === me.id && !m.deleted_at && !isLocal(m));
    if (last) setEditing(last.id);
  };

  // read receipts: under my latest message, who (else) has read up to it
  const reads = s.reads[roomId];
  const myLast = me ? [...messages].reverse().find((m) => m.sender_id === me.id && !isLocal(m)) : undefined;
  const seenBy = myLast && reads && me ? Object.entries(reads).filter(([u, seq]) => u !== me.id && seq >= myLast.seq).map(([u]) => names[u] ?? displayName(u)) : [];

  const typers = typingUsers(s, roomId, s.now).map((u) => names[u] ?? displayName(u));

  const candidates: Profile[] = useMemo(() => {
    const ids = new Set<string>([...(room?.member_ids ?? []), ...Object.keys(reads ?? {}), ...messages.map((m) => m.sender_id)]);
    if (me) ids.delete(me.id);
    return [...ids].map((id) => s.profiles[id]).filter((p): p is Profile => Boolean(p));
  }, [room, reads, messages, me, s.profiles]);

  const leave = async () => {
    if (!window.confirm("Leave this room?")) return;
    try {
      await api.post(`/api/v1/rooms/${encodeURIComponent(roomId)}/leave`);
      forgetRoom(roomId);
      router.replace("/rooms");
    } catch (e) {
      setError(errorText(e));
    }
  };

  const join = async () => {
    try {
      await joinRoom(roomId);
      setPreview(null);
      await openRoom(roomId);
    } catch (e) {
      setError(errorText(e));
    }
  };

  if (!me) return null;
  if (preview) {
    return (
      <section aria-label={preview.name} className="flex flex-1 flex-col items-center justify-center gap-3 p-6 text-center">
        <h1 className="text-xl font-semibold"># {preview.name}</h1>
        {preview.topic && <p className="text-gray-700 dark:text-gray-300">{preview.topic}</p>}
        <p className="text-sm text-gray-700 dark:text-gray-300">{preview.member_count} members · you are not a member yet</p>
        {error && <Alert>{error}</Alert>}
        <button type="button" onClick={() => void join()} className="rounded-md bg-indigo-600 px-4 py-2 font-medium text-white hover:bg-indigo-700">
          Join room
        </button>
      </section>
    );
  }
  const title = room ? roomTitle(room, s) : "Room";

  return (
    <div className="relative flex min-h-0 min-w-0 flex-1">
    <section aria-label={title} className="flex min-h-0 min-w-0 flex-1 flex-col">
      <div className="flex shrink-0 items-center gap-2 border-b border-gray-200 px-3 py-2 dark:border-gray-800">
        <Link href="/rooms" className="rounded px-1 text-xl md:hidden" aria-label="Back to rooms">
          <span aria-hidden="true">←</span>
        </Link>
        <div className="min-w-0 flex-1">
          <h1 className="truncate text-lg font-semibold">{room?.type === "direct" ? title : `# ${title}`}</h1>
          {room?.topic && <p className="truncate text-sm text-gray-700 dark:text-gray-300">{room.topic}</p>}
        </div>
        {room && (
          <button
            type="button"
            onClick={() => setShowMembers((v) => !v)}
            aria-expanded={showMembers}
            className="rounded-md px-2 py-1 text-sm text-gray-700 hover:bg-gray-100 dark:text-gray-300 dark:hover:bg-gray-800"
          >
            Members{room.member_count > 0 ? <span className="hidden sm:inline"> ({room.member_count})</span> : null}
          </button>
        )}
        {room && room.type !== "direct" && (
          <button type="button" onClick={() => void leave()} className="rounded-md px-2 py-1 text-sm text-gray-700 hover:bg-gray-100 dark:text-gray-300 dark:hover:bg-gray-800">
            Leave
          </button>
        )}
      </div>
      {error && <div className="p-2"><Alert>{error}</Alert></div>}
      <div className="relative min-h-0 flex-1">
        <div ref={scroller} onScroll={onScroll} className="relative h-full overflow-y-auto" tabIndex={0} aria-label="Messages">
          <div ref={topSentinel} />
          {timeline?.loaded && !timeline.hasMore && (
            <p className="px-4 py-6 text-center text-sm text-gray-600 dark:text-gray-400">This is the beginning of {room?.type === "direct" ? "your conversation" : `#${title}`}.</p>
          )}
          {loadingOlder && <Spinner label="Loading older messages…" />}
          {!timeline?.loaded && !error && <Spinner label="Loading messages…" />}
          <ol className="pb-2" aria-live="polite" aria-relevant="additions">
            {items.map((it) =>
              it.kind === "day" ? (
                <li key={it.key} className="my-3 flex items-center gap-3 px-3 text-xs font-semibold text-gray-600 dark:text-gray-400">
                  <span className="h-px flex-1 bg-gray-200 dark:bg-gray-800" />
                  <span>{it.label}</span>
                  <span className="h-px flex-1 bg-gray-200 dark:bg-gray-800" />
                </li>
              ) : it.kind === "new" ? (
                <li key={it.key} id="new-messages" className="my-2 flex items-center gap-3 px-3 text-xs font-semibold text-red-700 dark:text-red-400">
                  <span className="h-px flex-1 bg-red-400" />
                  <span>New messages</span>
                  <span className="h-px flex-1 bg-red-400" />
                </li>
              ) : (
                <MessageItem
                  key={it.key}
                  message={it.message}
                  grouped={it.grouped}
                  me={me}
                  replyTo={it.message.reply_to ? (byId.get(it.message.reply_to) ?? null) : null}
                  editing={editing === it.message.id}
                  seenBy={myLast?.id === it.message.id ? seenBy : NOBODY}
                  onReply={setReplyTo}
                  onEdit={setEditing}
                  onJump={jumpTo}
                  names={names}
                />
              ),
            )}
          </ol>
        </div>
        {!atBottom && (
          <button type="button" onClick={jumpToLatest} className="absolute bottom-3 left-1/2 -translate-x-1/2 rounded-full bg-indigo-600 px-4 py-1.5 text-sm font-medium text-white shadow-lg hover:bg-indigo-700">
            {unseen > 0 ? `${unseen} new message${unseen === 1 ? "" : "s"} · ` : ""}Jump to latest ↓
          </button>
        )}
      </div>
      <p className="h-5 shrink-0 truncate px-4 text-xs text-gray-700 dark:text-gray-300" aria-live="polite">
        {typers.length === 1 ? `${typers[0]} is typing…` : typers.length > 1 ? `${typers.slice(0, 3).join(", ")} are typing…` : ""}
      </p>
      <Composer
        roomId={roomId}
        roomName={room?.type === "direct" ? title : `#${title}`}
        replyTo={replyTo}
        replyName={replyTo ? (names[replyTo.sender_id] ?? displayName(replyTo.sender_id)) : ""}
        onCancelReply={() => setReplyTo(null)}
        onEditLast={editLast}
        candidates={candidates}
      />
    </section>
    {showMembers && room && <MembersPanel room={room} onClose={() => setShowMembers(false)} />}
    </div>
  );
}
