"""The JSON API (DRF): the stable, documented contract, one module per area."""
