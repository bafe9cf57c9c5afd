"""noetl_projector."""
