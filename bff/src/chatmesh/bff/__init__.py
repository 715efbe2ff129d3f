"""The ChatMesh backend-for-frontend: the public REST API (`/api/v1`) in front of
the gRPC services, browser sessions in httpOnly cookies, and the web UI."""
