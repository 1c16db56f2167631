"""The engine: plain Python + torch + numpy. Nothing here knows that a notebook exists."""
