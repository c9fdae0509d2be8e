"""The FastAPI control plane and read API under /api/v1."""
