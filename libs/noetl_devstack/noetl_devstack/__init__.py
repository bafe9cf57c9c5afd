"""noetl_devstack."""
