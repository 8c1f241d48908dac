"""dnnmap.capture (being written)."""
