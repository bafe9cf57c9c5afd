"""Background upkeep: the reaper, retention of old slices and their archive."""
