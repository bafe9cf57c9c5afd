"""HTTP handlers: requests in, responses out; they call the write path and read the store."""
