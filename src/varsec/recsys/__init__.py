"""varsec.recsys (see DESIGN.md section 1)."""
