"""Reads: one module per area; every page and API call starts with `access.project_access`."""
