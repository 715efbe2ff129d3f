// The app's one WebSocket: reconnects with backoff, heartbeats, and tells the store
// when it opens (so the store can resume) and what arrives.

/** "reconnecting": it was open and dropped; "unavailable": it never opened yet and
 * keeps retrying; "offline": given up (signed out). */
export type SocketStatus = "connecting" | "open" | "reconnecting" | "unavailable" | "offline";

export interface SocketHandlers {
  onOpen: () => void;
  onFrame: (frame: Record<string, unknown>) => void;
  onStatus: (status: SocketStatus) => void;
  /** The server refused our session (the attempt started at `since`, ms): refresh the
   * token unless that happened meanwhile; false means signed out. */
  onAuthFailure: (since: number) => Promise<boolean>;
}

const PING_EVERY_MS = 25_000;
const DEAD_AFTER_MS = 60_000;
const AUTH_CLOSE_CODES = new Set([4001, 4401, 4003, 1008]);

export class ChatSocket {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private stopped = true;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastHeard = 0;
  private everOpened = false;

  constructor(
    private readonly url: string,
    private readonly h: SocketHandlers,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
    if (typeof window !== "undefined") {
      window.addEventListener("online", this.kick);
    }
  }

  stop(): void {
    this.stopped = true;
    if (typeof window !== "undefined") window.removeEventListener("online", this.kick);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.ws?.close(1000, "bye");
    this.ws = null;
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  send(frame: Record<string, unknown>): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Reconnect now (the browser came back online, or the user asked). */
  private readonly kick = (): void => {
    if (this.stopped || this.isOpen) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.connect();
  };

  private retryStatus(): SocketStatus {
    return this.everOpened ? "reconnecting" : "unavailable";
  }

  private connect(): void {
    this.h.onStatus(this.attempt === 0 ? "connecting" : this.retryStatus());
    const ws = new WebSocket(this.url);
    const attemptStarted = Date.now();
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.everOpened = true;
      this.lastHeard = Date.now();
      this.h.onStatus("open");
      this.h.onOpen();
      if (this.pingTimer) clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => {
        if (Date.now() - this.lastHeard > DEAD_AFTER_MS) {
          ws.close(4000, "heartbeat timeout");
          return;
        }
        this.send({ type: "ping" });
      }, PING_EVERY_MS);
    };
    ws.onmessage = (ev) => {
      this.lastHeard = Date.now();
      if (typeof ev.data !== "string") return;
      let frame: unknown;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (typeof frame !== "object" || frame === null) return;
      if ((frame as { type?: unknown }).type === "ping") {
        this.send({ type: "pong" }); // the server's heartbeat
        return;
      }
      this.h.onFrame(frame as Record<string, unknown>);
    };
    ws.onclose = (ev) => {
      if (this.pingTimer) clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      this.attempt += 1;
      this.h.onStatus(this.retryStatus());
      const schedule = () => {
        const delay = Math.min(10_000, 500 * 2 ** Math.min(this.attempt - 1, 5)) * (0.8 + Math.random() * 0.4);
        this.retryTimer = setTimeout(() => this.connect(), delay);
      };
      if (AUTH_CLOSE_CODES.has(ev.code)) {
        void this.h.onAuthFailure(attemptStarted).then((ok) => {
          if (ok) schedule();
          else {
            this.stopped = true;
            this.h.onStatus("offline");
          }
        });
      } else {
        schedule();
      }
    };
  }
}

export function socketUrl(): string {
  const { protocol, host } = window.location;
  return `${protocol === "https:" ? "wss" : "ws"}://${host}/api/v1/ws`;
}
