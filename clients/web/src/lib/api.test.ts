import { describe, expect, it } from "vitest";
import { ApiClient, ApiError, errorText } from "./api";

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
const expiredBody = { error: { code: "token_expired", message: "expired", details: {} } };

describe("ApiClient", () => {
  it("refreshes once for concurrent 401 token_expired and retries", async () => {
    let refreshes = 0;
    let valid = false;
    const calls: string[] = [];
    const client = new ApiClient({
      fetch: async (url, init) => {
        calls.push(`${init?.method} ${url}`);
        if (url === "/api/v1/auth/refresh") {
          refreshes += 1;
          await new Promise((r) => setTimeout(r, 5));
          valid = true;
          return json(200, {});
        }
        expect(init?.credentials).toBe("same-origin");
        return valid ? json(200, { ok: url }) : json(401, expiredBody);
      },
    });
    const results = await Promise.all([client.get("/api/v1/me"), client.get("/api/v1/rooms"), client.get("/api/v1/auth/sessions")]);
    expect(results).toEqual([{ ok: "/api/v1/me" }, { ok: "/api/v1/rooms" }, { ok: "/api/v1/auth/sessions" }]);
    expect(refreshes).toBe(1);
  });

  it("surfaces the error shape and signs out when refresh fails", async () => {
    let signedOut = false;
    const client = new ApiClient({
      fetch: async (url) => (url.endsWith("/refresh") ? json(401, { error: { code: "unauthenticated", message: "no" } }) : json(401, expiredBody)),
      onSignedOut: () => {
        signedOut = true;
      },
    });
    const err = await client.get("/api/v1/me").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe("token_expired");
    expect(signedOut).toBe(true);
  });

  it("does not refresh for other errors or auth routes", async () => {
    let refreshes = 0;
    const client = new ApiClient({
      fetch: async (url) => {
        if (url.endsWith("/refresh")) refreshes += 1;
        return json(422, { error: { code: "validation_failed", message: "bad", details: { reasons: ["too short"] } } });
      },
    });
    const err = (await client.post("/api/v1/auth/login", {}).catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(422);
    expect(err.details).toEqual({ reasons: ["too short"] });
    expect(refreshes).toBe(0);
  });
});

describe("errorText", () => {
  it("spells out the reasons or the invalid fields", () => {
    expect(errorText(new ApiError(422, "weak_password", "password too weak", { reasons: ["must be at least 10 characters long"] }))).toBe(
      "Password too weak: must be at least 10 characters long",
    );
    expect(errorText(new ApiError(422, "validation_failed", "some fields are missing or invalid", { fields: [{ field: "email", type: "missing", message: "Field required" }] }))).toBe(
      "Some fields are missing or invalid: email: Field required",
    );
    expect(errorText(new TypeError("fetch failed"))).toMatch(/connection/);
  });
});
