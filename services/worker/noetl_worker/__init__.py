"""noetl_worker."""
