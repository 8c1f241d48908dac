"""dnnmap.mapping (being written)."""
