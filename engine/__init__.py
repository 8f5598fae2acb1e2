"""outcall engine: the pure asyncio core. Knows ports, not libraries (numpy/pydantic/PyYAML only)."""
