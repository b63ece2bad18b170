"""tui/services."""
