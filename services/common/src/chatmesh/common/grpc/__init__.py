"""gRPC plumbing shared by services: server bootstrap, interceptors, client channels."""
