"""SQL for each area, one module per table group. Functions take a pool or connection."""
