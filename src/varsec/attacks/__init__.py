"""varsec.attacks (see DESIGN.md section 1)."""
