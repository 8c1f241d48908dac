"""Cost rule modules; importing this package registers every rule."""
