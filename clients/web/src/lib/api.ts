// The REST client: same-origin cookies, JSON, the one error shape, and a single-flight
// refresh when the access token has expired.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

export interface ApiClientOptions {
  fetch?: Fetch;
  base?: string;
  /** Called when the session is gone for good (refresh failed). */
  onSignedOut?: () => void;
}

async function toError(res: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  const e = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  if (e && typeof e.code === "string") {
    return new ApiError(
      res.status,
      e.code,
      typeof e.message === "string" ? e.message : e.code,
      typeof e.details === "object" && e.details !== null ? (e.details as Record<string, unknown>) : {},
    );
  }
  return new ApiError(res.status, res.status >= 500 ? "server_error" : "http_error", `Request failed (${res.status})`);
}

/** Codes the BFF uses for an access token that a refresh can fix. */
const REFRESHABLE = new Set(["token_expired", "unauthenticated"]);

/** Routes whose 401 means "wrong credentials", not "expired session". */
const NO_REFRESH = ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/auth/password-reset"];

export class ApiClient {
  private readonly fetchImpl: Fetch;
  private readonly base: string;
  private refreshing: Promise<boolean> | null = null;
  private readonly onSignedOut?: () => void;

  constructor(opts: ApiClientOptions = {}) {
    this.fetchImpl = opts.fetch ?? ((i, init) => fetch(i, init));
    this.base = opts.base ?? "";
    this.onSignedOut = opts.onSignedOut;
  }

  /** One refresh at a time: concurrent 401s wait for the same attempt. Across tabs too:
   * tabs share the cookie jar, so two tabs refreshing with the same refresh token would
   * look like token theft (reuse revokes the whole session). A Web Lock serialises them,
   * and a tab that got the lock just after another tab refreshed reuses that result. */
  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      const started = Date.now();
      this.refreshing = withCrossTabLock(async () => {
        if (lastRefreshAt() > started - 1000) return true; // another tab just did it
        const ok = await this.fetchImpl(`${this.base}/api/v1/auth/refresh`, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: "{}",
        })
          .then((r) => r.ok)
          .catch(() => false);
        if (ok) markRefreshed();
        return ok;
      }).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async request<T>(method: string, path: string, body?: unknown, opts: { retry?: boolean; signal?: AbortSignal } = {}): Promise<T> {
    const init: RequestInit = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
      signal: opts.signal,
    };
    let res = await this.fetchImpl(this.base + path, init);
    if (res.status === 401 && opts.retry !== false && !NO_REFRESH.some((p) => path.startsWith(p))) {
      const err = await toError(res.clone());
      if (REFRESHABLE.has(err.code)) {
        if (await this.refresh()) {
          res = await this.fetchImpl(this.base + path, init);
        } else {
          this.onSignedOut?.();
        }
      }
    }
    if (!res.ok) throw await toError(res);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T>(path: string, signal?: AbortSignal) {
    return this.request<T>("GET", path, undefined, { signal });
  }
  post<T>(path: string, body: unknown = {}) {
    return this.request<T>("POST", path, body);
  }
  patch<T>(path: string, body: unknown) {
    return this.request<T>("PATCH", path, body);
  }
  del<T>(path: string, body?: unknown) {
    return this.request<T>("DELETE", path, body);
  }
}

const REFRESH_LOCK = "chatmesh-refresh";
const REFRESHED_KEY = "chatmesh-refreshed-at";

function withCrossTabLock<T>(f: () => Promise<T>): Promise<T> {
  const locks = typeof navigator !== "undefined" ? (navigator as Navigator & { locks?: LockManager }).locks : undefined;
  // request() resolves to what the callback resolves to (lib.dom types it one level deeper)
  return locks ? (locks.request(REFRESH_LOCK, f) as unknown as Promise<T>) : f();
}

/** When any tab last refreshed the session (ms since epoch; 0 when unknown). */
export function lastRefreshAt(): number {
  try {
    return Number(globalThis.localStorage?.getItem(REFRESHED_KEY) ?? 0) || 0;
  } catch {
    return 0;
  }
}

function markRefreshed(): void {
  try {
    globalThis.localStorage?.setItem(REFRESHED_KEY, String(Date.now()));
  } catch {
    /* storage unavailable: the lock alone still serialises */
  }
}

export const api = new ApiClient();

const sentence = (t: string) => (t ? t[0]!.toUpperCase() + t.slice(1) : t);

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    return sentence(rawErrorText(e));
  }
  return "Something went wrong. Check your connection and try again.";
}

function rawErrorText(e: ApiError): string {
  const reasons = e.details.reasons ?? e.details.errors ?? e.details.fields;
  if (!Array.isArray(reasons) || reasons.length === 0) return e.message;
  const text = reasons.map((r) =>
    typeof r === "string"
      ? r
      : typeof r === "object" && r !== null && "message" in r
        ? [(r as { field?: unknown }).field, (r as { message: unknown }).message].filter((x) => typeof x === "string" && x).join(": ")
        : JSON.stringify(r),
  );
  return `${e.message}: ${text.join("; ")}`;
}

export const q = (params: Record<string, string | number | null | undefined>): string => {
  const usp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") usp.set(k, String(v));
  const s = usp.toString();
  return s ? `?${s}` : "";
};
