"""Presence: connection leases, published statuses, and their fan-out."""
