"""varsec.study (see DESIGN.md section 1)."""
