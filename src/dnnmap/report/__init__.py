"""Tables, JSON/CSV and plots of dnnmap's results. Thin: no analysis lives here."""
