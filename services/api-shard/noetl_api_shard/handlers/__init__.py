"""HTTP handlers, one module per area; each exposes `register(app)` adding its routes."""
