"""A playbook's `keychain:` section: resolved and stored when an execution starts, renewed when read."""
