"""Prometheus metrics of the user service (besides the gRPC server metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PRESENCE_CHANGES = Counter(
    "chatmesh_presence_changes_total",
    "Presence changes published, by new status.",
    ["status"],
)
PRESENCE_CONNECTIONS = Counter(
    "chatmesh_presence_connections_total",
    "Connections reported by BFFs, by event (opened, closed).",
    ["event"],
)
PRESENCE_WATCHED_USERS = Gauge(
    "chatmesh_presence_watched_users",
    "Users whose presence channel this replica is subscribed to.",
)
PRESENCE_WATCH_STREAMS = Gauge(
    "chatmesh_presence_watch_streams",
    "Open WatchPresence streams on this replica.",
)
