"""kwsbnn.boards."""
