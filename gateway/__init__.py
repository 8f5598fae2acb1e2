"""outcall gateway: I/O adapters (SIP, RTP, store, ...) behind engine ports."""
