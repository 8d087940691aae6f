"""kwsbnn.sw."""
