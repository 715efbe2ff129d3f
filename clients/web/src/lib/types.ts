// Shapes of the public API (ARCHITECTURE.md §6). Fields the contract does not fix
// are optional, and `normalize*` accepts the spellings the BFF may use.

export interface User {
  id: string;
  username: string;
  email: string;
  display_name: string;
  email_verified: boolean;
  created_at?: string;
}

export interface Profile {
  id: string;
  username: string;
  display_name: string;
  bio?: string;
  avatar_url?: string;
  status_text?: string;
  status_emoji?: string;
  time_zone?: string;
  relationship?: Relationship;
  friend_request_id?: string;
}

export type Relationship =
  | "none"
  | "self"
  | "friend"
  | "request_sent"
  | "request_received"
  | "blocked";

export type Presence = "online" | "away" | "offline";

export interface Reaction {
  emoji: string;
  count: number;
  user_ids: string[];
}

export interface Message {
  id: string;
  room_id: string;
  seq: number;
  sender_id: string;
  body: string;
  client_msg_id: string;
  reply_to: string | null;
  created_at: string;
  edited_at: string | null;
  deleted_at?: string | null;
  reactions: Reaction[];
  mention_user_ids?: string[];
}

/** A message in the local timeline: a server message, or one of ours still in flight. */
export type SendState = "pending" | "sent" | "failed";

export interface TimelineMessage extends Message {
  state: SendState;
}

export interface Room {
  id: string;
  type: "group" | "direct";
  visibility: "public" | "private";
  name: string;
  topic: string;
  last_seq: number;
  member_count: number;
  member_ids: string[];
  last_message: Message | null;
  unread_count: number;
  last_read_seq: number;
  role?: string;
  is_member?: boolean;
}

export type MemberRole = "owner" | "admin" | "member";

export interface Member {
  user_id: string;
  username: string;
  role: MemberRole;
  last_read_seq: number;
}

/** A page of the public room directory: rooms carry `is_member`. */
export interface PublicRoomPage {
  rooms: Room[];
  next_cursor: string | null;
}

export interface Session {
  id: string;
  ip_address: string;
  user_agent: string;
  created_at: string;
  last_used_at: string;
  current: boolean;
}

export interface HighlightSpan {
  text: string;
  match: boolean;
}

export interface SearchHit {
  message: Message;
  highlight: HighlightSpan[];
  score?: number;
}

export interface FriendRequest {
  id: string;
  direction: "incoming" | "outgoing";
  profile: Profile;
}
