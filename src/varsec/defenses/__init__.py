"""varsec.defenses (see DESIGN.md section 1)."""
