"use client";
// The app's chat store: ChatState + the outbox + toasts, wired to the one WebSocket
// and the REST API. React components read it with useChat(selector).
import { useSyncExternalStore } from "react";
import { api, lastRefreshAt, q } from "./api";
import {
  addLocal,
  applyFrame,
  applyLatestPage,
  applyOlderPage,
  dropLocal,
  failLocal,
  initialState,
  markRoomRead,
  removeRoom,
  retryLocal,
  toggleLocalReaction,
  upsertRoom,
  type ChatState,
} from "./chatState";
import { resumeFrame } from "./cursors";
import { listOf, normalizeMember, normalizeMessage, normalizeProfile, normalizeRoom } from "./normalize";
import { enqueue, expired, markSent, resetAll, sendFrame, settle, unsent, type Outbox } from "./outbox";
import { ChatSocket, socketUrl } from "./socket";
import { newClientMsgId } from "./text";
import { latestSeq, oldestSeq } from "./timeline";
import type { Member, MemberRole, Message, Profile, Room, User } from "./types";

export interface Toast {
  id: string;
  title: string;
  body: string;
  href?: string;
}

export interface StoreState extends ChatState {
  outbox: Outbox;
  toasts: Toast[];
  profiles: Readonly<Record<string, Profile>>;
  now: number;
  roomsLoaded: boolean;
}

const PAGE = 50;

let state: StoreState = { ...initialState, outbox: {}, toasts: [], profiles: {}, now: Date.now(), roomsLoaded: false };
const listeners = new Set<() => void>();
let socket: ChatSocket | null = null;
let ticker: ReturnType<typeof setInterval> | null = null;
let resumeTimer: ReturnType<typeof setTimeout> | null = null;
const lastTypingSent: Record<string, number> = {};
const readTimers: Record<string, ReturnType<typeof setTimeout>> = {};
const profileRequests = new Set<string>();

function set(next: StoreState): void {
  if (next === state) return;
  state = next;
  for (const l of listeners) l();
}

function update(f: (s: StoreState) => StoreState): void {
  set(f(state));
}

/** Apply a ChatState transition, keeping the store-only fields. */
function chat(f: (s: ChatState) => ChatState): void {
  update((s) => {
    const next = f(s);
    return next === s ? s : { ...s, ...next };
  });
}

export function getState(): StoreState {
  return state;
}

export function subscribe(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

export function useChat<T>(selector: (s: StoreState) => T): T {
  return useSyncExternalStore(subscribe, () => selector(state), () => selector(state));
}

// --- connection -------------------------------------------------------------------

function sendResume(): void {
  if (resumeTimer) clearTimeout(resumeTimer);
  resumeTimer = null;
  socket?.send(resumeFrame(state.cursors));
  flushOutbox();
}

function flushOutbox(): void {
  for (const e of unsent(state.outbox)) {
    if (socket?.send(sendFrame(e))) update((s) => ({ ...s, outbox: markSent(s.outbox, e.client_msg_id, Date.now()) }));
  }
}

function notify(m: Message): void {
  const s = state;
  if (!s.me || m.sender_id === s.me.id) return;
  const room = s.rooms[m.room_id];
  const visible = s.activeRoom === m.room_id && typeof document !== "undefined" && document.visibilityState === "visible";
  if (visible || !room) return;
  const mentioned = (m.mention_user_ids ?? []).includes(s.me.id) || new RegExp(`(^|\\s)@${s.me.username}\\b`, "i").test(m.body);
  if (room.type !== "direct" && !mentioned) return;
  const who = displayName(m.sender_id);
  const title = room.type === "direct" ? `Message from ${who}` : `${who} mentioned you in #${room.name}`;
  const body = m.body.length > 140 ? `${m.body.slice(0, 140)}…` : m.body;
  const toast: Toast = { id: m.id, title, body, href: `/room?id=${encodeURIComponent(m.room_id)}` };
  update((st) => ({ ...st, toasts: [...st.toasts.filter((t) => t.id !== m.id), toast].slice(-4) }));
  setTimeout(() => dismissToast(toast.id), 8000);
  if (typeof Notification !== "undefined" && Notification.permission === "granted" && document.visibilityState !== "visible") {
    try {
      new Notification(title, { body, tag: m.id });
    } catch {
      /* some browsers only allow notifications from a service worker */
    }
  }
}

/** Users a frame mentions (senders, reactors, readers, typers): fetch their names. */
function usersIn(frame: Record<string, unknown>): string[] {
  const ids: string[] = [];
  if (typeof frame.user_id === "string") ids.push(frame.user_id);
  const m = frame.message as { sender_id?: unknown; reactions?: unknown } | undefined;
  if (m && typeof m.sender_id === "string") ids.push(m.sender_id);
  const reactions = Array.isArray(frame.reactions) ? frame.reactions : Array.isArray(m?.reactions) ? m.reactions : [];
  for (const r of reactions as { user_ids?: unknown }[]) {
    if (Array.isArray(r.user_ids)) ids.push(...r.user_ids.filter((u): u is string => typeof u === "string"));
  }
  return ids;
}

function onFrame(frame: Record<string, unknown>): void {
  const type = frame.type;
  if (type !== "pong" && type !== "presence") requestProfiles(usersIn(frame));
  if (type === "ready") {
    chat((s) => applyFrame(s, frame, Date.now()));
    sendResume();
    return;
  }
  if (type === "pong") return;
  if (type === "error") {
    // a failed message.send names its client_msg_id in `details`
    const details = (frame.details ?? {}) as { client_msg_id?: unknown };
    const rawCid = frame.client_msg_id ?? details.client_msg_id;
    const cid = typeof rawCid === "string" ? rawCid : null;
    const entry = cid ? state.outbox[cid] : undefined;
    if (cid && entry) {
      update((s) => ({ ...s, outbox: settle(s.outbox, cid) }));
      chat((s) => failLocal(s, entry.room_id, cid));
    }
    // Other errors answer typing / read / resume frames: nothing the user can act on.
    if (cid && entry) pushToast({ title: "Message not sent", body: typeof frame.message === "string" ? frame.message : "Something went wrong" });
    else console.warn("chat socket error", frame.code, frame.message);
    return;
  }
  if (type === "message.ack" || type === "message.created") {
    const m = normalizeMessage(frame.message);
    const cid = (typeof frame.client_msg_id === "string" && frame.client_msg_id) || m?.client_msg_id;
    const known = m && state.timelines[m.room_id]?.messages.some((x) => x.id === m.id);
    if (cid && cid in state.outbox && m?.sender_id === state.me?.id) update((s) => ({ ...s, outbox: settle(s.outbox, cid) }));
    if (m && !known && m.room_id in state.rooms) {
      requestProfiles([m.sender_id]);
      if (type === "message.created") notify(m);
    } else if (m && !(m.room_id in state.rooms)) {
      void loadRooms();
    }
    chat((s) => applyFrame(s, frame, Date.now()));
    if (m && state.activeRoom === m.room_id && type === "message.created") scheduleRead(m.room_id);
    return;
  }
  if (type === "room.updated") {
    const room = normalizeRoom(frame.room);
    if (room && !(room.id in state.rooms)) {
      chat((s) => applyFrame(s, frame, Date.now()));
      if (room.id in state.rooms) socket?.send({ type: "resume", rooms: { [room.id]: 0 } });
      return;
    }
  }
  chat((s) => applyFrame(s, frame, Date.now()));
}

export function connect(me: User): void {
  update((s) => ({ ...s, me }));
  if (socket || typeof window === "undefined") return;
  socket = new ChatSocket(socketUrl(), {
    onOpen: () => {
      update((s) => ({ ...s, outbox: resetAll(s.outbox) }));
      // `ready` triggers the resume; if the server sends none, resume anyway.
      resumeTimer = setTimeout(sendResume, 2000);
    },
    onFrame,
    onStatus: (status) => chat((s) => ({ ...s, status })),
    onAuthFailure: (since) => (lastRefreshAt() >= since ? Promise.resolve(true) : api.refresh()),
  });
  socket.start();
  ticker = setInterval(tick, 1000);
  // my own avatar next to my messages
  void api
    .get<unknown>("/api/v1/users/me/profile")
    .then((p) => {
      const profile = normalizeProfile(p);
      if (profile) rememberProfiles([profile]);
    })
    .catch(() => undefined);
}

export function disconnect(): void {
  socket?.stop();
  socket = null;
  if (ticker) clearInterval(ticker);
  ticker = null;
  set({ ...initialState, outbox: {}, toasts: [], profiles: {}, now: Date.now(), roomsLoaded: false });
}

function tick(): void {
  const now = Date.now();
  const late = expired(state.outbox, now);
  if (late.length > 0) {
    for (const cid of late) {
      const e = state.outbox[cid];
      if (!e) continue;
      update((s) => ({ ...s, outbox: settle(s.outbox, cid) }));
      chat((s) => failLocal(s, e.room_id, cid));
    }
  }
  const anyTyping = Object.values(state.typing).some((t) => Object.values(t).some((until) => until > state.now - 1000));
  if (anyTyping) update((s) => ({ ...s, now }));
}

// --- rooms and history -------------------------------------------------------------

export async function loadRooms(): Promise<void> {
  try {
    const data = await api.get<unknown>("/api/v1/rooms");
    const rooms = listOf(data, "rooms").map(normalizeRoom).filter((r): r is Room => r !== null);
    addRooms(rooms);
    const dmMembers = rooms.filter((r) => r.type === "direct").flatMap((r) => r.member_ids);
    requestProfiles(dmMembers);
  } finally {
    update((s) => ({ ...s, roomsLoaded: true }));
  }
}

export function upsertRoomFromApi(raw: unknown): Room | null {
  const room = normalizeRoom(raw);
  if (room) addRooms([room]);
  return room;
}

/** Add rooms to the list; rooms new to this connection are resumed on the socket at
 * once, so it delivers them live (a room joined, created or opened as a DM after the
 * socket's `ready`). */
function addRooms(rooms: Room[]): void {
  const fresh = rooms.filter((r) => !(r.id in state.rooms));
  chat((s) => rooms.reduce((acc, r) => upsertRoom(acc, r, { seedCursor: true }), s));
  if (fresh.length > 0 && socket?.isOpen && state.status === "open") {
    const rooms: Record<string, number> = {};
    for (const r of fresh) rooms[r.id] = state.cursors[r.id] ?? r.last_seq;
    socket.send({ type: "resume", rooms });
  }
}

export function forgetRoom(roomId: string): void {
  chat((s) => removeRoom(s, roomId));
}

function pageOf(data: unknown): { messages: Message[]; hasMore: boolean | null } {
  const messages = listOf(data, "messages").map(normalizeMessage).filter((m): m is Message => m !== null);
  const d = data as { has_more?: unknown; next_before_seq?: unknown } | null;
  const hasMore = typeof d?.has_more === "boolean" ? d.has_more : null;
  return { messages, hasMore };
}

export async function openRoom(roomId: string): Promise<void> {
  chat((s) => ({ ...s, activeRoom: roomId }));
  const tl = state.timelines[roomId];
  if (tl?.loaded) {
    scheduleRead(roomId);
    return;
  }
  const data = await api.get<unknown>(`/api/v1/rooms/${encodeURIComponent(roomId)}/messages?limit=${PAGE}`);
  const { messages, hasMore } = pageOf(data);
  requestProfiles(messages.flatMap((m) => [m.sender_id, ...m.reactions.flatMap((r) => r.user_ids)]));
  chat((s) => applyLatestPage(s, roomId, messages, hasMore ?? messages.length >= PAGE));
  scheduleRead(roomId);
}

export function closeRoom(roomId: string): void {
  if (state.activeRoom === roomId) chat((s) => ({ ...s, activeRoom: null }));
}

export async function loadOlder(roomId: string): Promise<number> {
  const tl = state.timelines[roomId];
  if (!tl || !tl.hasMore) return 0;
  const before = oldestSeq(tl.messages);
  if (before === null || before <= 1) {
    chat((s) => applyOlderPage(s, roomId, [], false));
    return 0;
  }
  const data = await api.get<unknown>(`/api/v1/rooms/${encodeURIComponent(roomId)}/messages?before_seq=${before}&limit=${PAGE}`);
  const { messages, hasMore } = pageOf(data);
  requestProfiles(messages.flatMap((m) => [m.sender_id, ...m.reactions.flatMap((r) => r.user_ids)]));
  chat((s) => applyOlderPage(s, roomId, messages, hasMore ?? messages.length >= PAGE));
  return messages.length;
}

/** Room details and members (read receipts, mention candidates). Returns the room;
 * a room the caller is not a member of (a public room opened by link) is returned but
 * not added to the room list. */
export async function loadMembers(roomId: string): Promise<Room | null> {
  try {
    const data = await api.get<unknown>(`/api/v1/rooms/${encodeURIComponent(roomId)}`);
    const d = data as { room?: unknown; members?: unknown } | null;
    const room = normalizeRoom(d?.room ?? data);
    if (room && room.is_member !== false) addRooms([room]);
    const members = listOf(d?.members ?? (d?.room as { members?: unknown } | undefined)?.members, "members");
    const reads: Record<string, number> = {};
    const ids: string[] = [];
    for (const raw of members) {
      const m = raw as { user_id?: unknown; last_read_seq?: unknown; username?: unknown };
      if (typeof m.user_id !== "string") continue;
      ids.push(m.user_id);
      if (typeof m.last_read_seq === "number") reads[m.user_id] = m.last_read_seq;
    }
    requestProfiles([...ids, ...(room?.member_ids ?? [])]);
    if (ids.length > 0) chat((s) => ({ ...s, reads: { ...s.reads, [roomId]: { ...reads, ...s.reads[roomId] } } }));
    return room;
  } catch {
    return null; // details are optional; the history request reports real errors
  }
}

/** Every member of a room with their role (pages of 500), also seeding read receipts
 * and the members' profiles. */
export async function fetchMembers(roomId: string): Promise<Member[]> {
  const members: Member[] = [];
  let cursor: string | null = null;
  do {
    const data: unknown = await api.get<unknown>(`/api/v1/rooms/${encodeURIComponent(roomId)}/members${q({ limit: 500, cursor })}`);
    members.push(...listOf(data, "members").map(normalizeMember).filter((m): m is Member => m !== null));
    const next = (data as { next_cursor?: unknown } | null)?.next_cursor;
    cursor = typeof next === "string" && next ? next : null;
  } while (cursor);
  requestProfiles(members.map((m) => m.user_id));
  const reads: Record<string, number> = {};
  for (const m of members) reads[m.user_id] = m.last_read_seq;
  chat((s) => ({ ...s, reads: { ...s.reads, [roomId]: { ...reads, ...s.reads[roomId] } } }));
  return members;
}

export async function addMember(roomId: string, userId: string): Promise<void> {
  await api.post(`/api/v1/rooms/${encodeURIComponent(roomId)}/members`, { user_id: userId });
}

export async function removeMember(roomId: string, userId: string): Promise<void> {
  await api.del(`/api/v1/rooms/${encodeURIComponent(roomId)}/members/${encodeURIComponent(userId)}`);
}

export async function setMemberRole(roomId: string, userId: string, role: Exclude<MemberRole, "owner">): Promise<void> {
  await api.patch(`/api/v1/rooms/${encodeURIComponent(roomId)}/members/${encodeURIComponent(userId)}`, { role });
}

export async function joinRoom(roomId: string): Promise<void> {
  const data = await api.post<unknown>(`/api/v1/rooms/${encodeURIComponent(roomId)}/join`);
  const room = normalizeRoom((data as { room?: unknown } | null)?.room ?? data);
  if (room) addRooms([{ ...room, is_member: true }]);
  else await loadRooms();
}

// --- sending -------------------------------------------------------------------

export function sendMessage(roomId: string, body: string, replyTo: string | null): void {
  const me = state.me;
  if (!me) return;
  const client_msg_id = newClientMsgId();
  // receivers clear our typing indicator when the message lands: the next keystroke
  // must announce typing again, whatever the throttle says
  delete lastTypingSent[roomId];
  chat((s) => addLocal(s, { room_id: roomId, body, client_msg_id, sender_id: me.id, reply_to: replyTo }));
  update((s) => ({ ...s, outbox: enqueue(s.outbox, { client_msg_id, room_id: roomId, body, reply_to: replyTo }, Date.now()) }));
  flushOutbox();
}

export function retrySend(roomId: string, clientMsgId: string): void {
  const m = state.timelines[roomId]?.messages.find((x) => x.client_msg_id === clientMsgId);
  if (!m) return;
  chat((s) => retryLocal(s, roomId, clientMsgId));
  update((s) => ({ ...s, outbox: enqueue(s.outbox, { client_msg_id: clientMsgId, room_id: roomId, body: m.body, reply_to: m.reply_to }, Date.now()) }));
  flushOutbox();
}

export function discardSend(roomId: string, clientMsgId: string): void {
  update((s) => ({ ...s, outbox: settle(s.outbox, clientMsgId) }));
  chat((s) => dropLocal(s, roomId, clientMsgId));
}

export async function editMessage(messageId: string, body: string): Promise<void> {
  const data = await api.patch<unknown>(`/api/v1/messages/${encodeURIComponent(messageId)}`, { body });
  const m = normalizeMessage((data as { message?: unknown } | null)?.message ?? data);
  if (m) chat((s) => applyFrame(s, { type: "message.updated", message: m }, Date.now()));
}

export async function deleteMessage(roomId: string, messageId: string): Promise<void> {
  await api.del(`/api/v1/messages/${encodeURIComponent(messageId)}`);
  chat((s) => applyFrame(s, { type: "message.deleted", room_id: roomId, message_id: messageId }, Date.now()));
}

export async function toggleReaction(roomId: string, messageId: string, emoji: string): Promise<void> {
  const me = state.me;
  const m = state.timelines[roomId]?.messages.find((x) => x.id === messageId);
  if (!me || !m) return;
  const mine = m.reactions.some((r) => r.emoji === emoji && r.user_ids.includes(me.id));
  chat((s) => toggleLocalReaction(s, roomId, messageId, emoji));
  try {
    const path = `/api/v1/messages/${encodeURIComponent(messageId)}/reactions`;
    const data = mine ? await api.del<unknown>(path, { emoji }) : await api.post<unknown>(path, { emoji });
    const updated = normalizeMessage((data as { message?: unknown } | null)?.message ?? data);
    if (updated) chat((s) => applyFrame(s, { type: "reaction.updated", message: updated }, Date.now()));
  } catch (e) {
    chat((s) => toggleLocalReaction(s, roomId, messageId, emoji)); // undo
    throw e;
  }
}

export function sendTyping(roomId: string): void {
  const now = Date.now();
  if (now - (lastTypingSent[roomId] ?? 0) < 3000) return;
  lastTypingSent[roomId] = now;
  socket?.send({ type: "typing", room_id: roomId });
}

function scheduleRead(roomId: string): void {
  if (readTimers[roomId]) clearTimeout(readTimers[roomId]);
  readTimers[roomId] = setTimeout(() => {
    delete readTimers[roomId];
    if (typeof document !== "undefined" && document.visibilityState !== "visible") return;
    const tl = state.timelines[roomId];
    const room = state.rooms[roomId];
    if (!tl || !room) return;
    const seq = Math.max(latestSeq(tl.messages), 0);
    if (seq <= 0 || (seq <= room.last_read_seq && room.unread_count === 0)) return;
    chat((s) => markRoomRead(s, roomId, seq));
    if (!socket?.send({ type: "read", room_id: roomId, seq })) {
      void api.post(`/api/v1/rooms/${encodeURIComponent(roomId)}/read`, { seq }).catch(() => undefined);
    }
  }, 400);
}

export function markVisibleRead(roomId: string): void {
  scheduleRead(roomId);
}

// --- people ------------------------------------------------------------------

export function rememberProfiles(profiles: Profile[]): void {
  if (profiles.length === 0) return;
  update((s) => {
    const next = { ...s.profiles };
    for (const p of profiles) next[p.id] = { ...next[p.id], ...p };
    return { ...s, profiles: next };
  });
}

export function requestProfiles(ids: string[]): void {
  const missing = [...new Set(ids)].filter((id) => id && !(id in state.profiles) && !profileRequests.has(id) && id !== state.me?.id);
  for (const id of missing) {
    profileRequests.add(id);
    void api
      .get<unknown>(`/api/v1/users/${encodeURIComponent(id)}`)
      .then((data) => {
        const p = normalizeProfile(data);
        if (p) rememberProfiles([p]);
      })
      .catch(() => undefined);
  }
}

export function displayName(userId: string): string {
  if (state.me && userId === state.me.id) return state.me.display_name || state.me.username;
  const p = state.profiles[userId];
  return p ? p.display_name || p.username : "Unknown user";
}

export function roomTitle(room: Room, s: StoreState = state): string {
  if (room.type !== "direct") return room.name || "Untitled room";
  const others = room.member_ids.filter((id) => id !== s.me?.id);
  if (others.length === 0) return "Just you";
  return others.map((id) => s.profiles[id]?.display_name || s.profiles[id]?.username || "Direct message").join(", ");
}

// --- toasts -------------------------------------------------------------------

export function pushToast(t: Omit<Toast, "id">): void {
  const toast = { ...t, id: newClientMsgId() };
  update((s) => ({ ...s, toasts: [...s.toasts, toast].slice(-4) }));
  setTimeout(() => dismissToast(toast.id), 6000);
}

export function dismissToast(id: string): void {
  update((s) => ({ ...s, toasts: s.toasts.filter((t) => t.id !== id) }));
}
