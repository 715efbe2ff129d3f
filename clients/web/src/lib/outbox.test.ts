import { describe, expect, it } from "vitest";
import { enqueue, expired, markSent, resetAll, sendFrame, settle, unsent, SEND_TIMEOUT_MS } from "./outbox";

const e = (id: string) => ({ client_msg_id: id, room_id: "r", body: `b${id}`, reply_to: null });

describe("outbox", () => {
  it("queues, sends in order, settles on ack", () => {
    let o = enqueue({}, e("a"), 1);
    o = enqueue(o, e("b"), 2);
    expect(unsent(o).map((x) => x.client_msg_id)).toEqual(["a", "b"]);
    o = markSent(o, "a", 3);
    expect(unsent(o).map((x) => x.client_msg_id)).toEqual(["b"]);
    o = settle(o, "a");
    expect(Object.keys(o)).toEqual(["b"]);
  });

  it("resends everything in flight after a reconnect, with the same client_msg_id", () => {
    let o = markSent(enqueue({}, e("a"), 1), "a", 2);
    o = resetAll(o);
    const [again] = unsent(o);
    expect(sendFrame(again!)).toEqual({ type: "message.send", room_id: "r", body: "ba", client_msg_id: "a" });
  });

  it("expires entries that wait too long", () => {
    let o = enqueue({}, e("a"), 0);
    o = enqueue(o, e("b"), 5000);
    expect(expired(o, SEND_TIMEOUT_MS)).toEqual(["a"]);
    o = markSent(o, "a", SEND_TIMEOUT_MS);
    expect(expired(o, SEND_TIMEOUT_MS + 1)).toEqual([]);
  });
  it("includes reply_to only when set", () => {
    expect(sendFrame({ ...e("x"), reply_to: "m1", sent_at: null, queued_at: 0 })).toHaveProperty("reply_to", "m1");
  });
});
