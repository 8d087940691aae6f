"""kwsbnn.sim."""
