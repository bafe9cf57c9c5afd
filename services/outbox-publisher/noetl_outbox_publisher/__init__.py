"""noetl_outbox_publisher."""
