"""Render and check the NoETL fleet Kubernetes manifests (see deploy/README.md)."""
