"""noetl_router."""
