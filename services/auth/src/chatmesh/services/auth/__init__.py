"""The auth service: accounts, credentials, sessions (devices) and signing keys."""
