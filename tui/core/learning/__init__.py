"""tui/core/learning."""
