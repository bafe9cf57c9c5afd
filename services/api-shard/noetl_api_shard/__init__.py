"""noetl_api_shard."""
