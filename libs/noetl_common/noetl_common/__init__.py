"""noetl_common."""
