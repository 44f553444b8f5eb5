"""configuration package."""
