"""varsec.vision (see DESIGN.md section 1)."""
