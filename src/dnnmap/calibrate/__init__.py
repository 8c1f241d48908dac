"""dnnmap.calibrate (being written)."""
