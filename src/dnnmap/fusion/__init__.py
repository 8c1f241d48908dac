"""dnnmap.fusion (being written)."""
