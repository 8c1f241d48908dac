"""dnnmap.hardware (being written)."""
