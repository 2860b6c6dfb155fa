"""Template filters of the annotation app."""
