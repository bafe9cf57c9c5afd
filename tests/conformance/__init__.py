"""Conformance runner: any directory in the noetl-conformance/1 format, through a live fleet."""
