"""Floors: references without learned parameters (popularity, the user's own items, item kNN)."""
