"""kwsbnn.hw."""
