"""dnnmap.validate (being written)."""
