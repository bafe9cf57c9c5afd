"""NoETL's frames runtime on a shard: the life of a frame (machine) and its routes."""
