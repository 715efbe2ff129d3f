"""pytest plugin with fixtures for real infrastructure.

- `postgres_url`: a fresh database on CHATMESH_TEST_POSTGRES_URL's server
  (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres), dropped after.
- `redis_url`: CHATMESH_TEST_REDIS_URL (default redis://127.0.0.1:6379/15), flushed first.
- `free_port()`: a free TCP port on 127.0.0.1.

When the server is missing the test is skipped locally but FAILS when CI is set.
"""
