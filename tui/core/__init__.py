"""tui/core."""
