"""Tool runners by kind. Each is `async (config, inputs, ctx) -> result`; a failure raises ToolError
with a message a person can act on (it becomes the step's error)."""
