"""htmx pages of the annotation app, one module per screen."""
