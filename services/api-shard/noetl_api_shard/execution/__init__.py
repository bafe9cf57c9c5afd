"""Execution API: start, event ingest with the engine, command claims, queries."""
