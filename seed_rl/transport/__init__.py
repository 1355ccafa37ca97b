"""How actors and the learner talk: the wire format, the gRPC and shared-memory endpoints, TLS and tokens."""
