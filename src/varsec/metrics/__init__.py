"""varsec.metrics (see DESIGN.md section 1)."""
