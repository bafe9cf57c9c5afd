"""Operator CLI for the NoETL fleet (`python -m noetl_ops status|scale`)."""
