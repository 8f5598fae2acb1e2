"""HTTP API (FastAPI): a router per resource."""
