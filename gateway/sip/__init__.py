"""Our own asyncio SIP user agent (RFC 3261 and friends). Import the submodules directly."""
