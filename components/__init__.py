"""Components of a labeling workspace (see DESIGN.md for the layout)."""
