"""The WebSocket API (`GET /api/v1/ws`); the protocol is in docs/websocket.md.

- `frames`: room events and messages → JSON frames;
- `hub`: this process's one StreamRoomEvents stream, fanned out to the connections;
- `connection`: one client's state (rooms, last seqs, send queue, resume);
- `endpoint`: the ASGI endpoint (auth, the frame loop, limits).
"""
