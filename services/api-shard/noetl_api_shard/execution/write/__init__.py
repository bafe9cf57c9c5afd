"""The write path: one shard transaction per change (engine, unit of work, group commit, announcements)."""
