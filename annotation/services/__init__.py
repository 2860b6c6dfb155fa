"""Writes: every change to annotation data goes through a function in this package."""
