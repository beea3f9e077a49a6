"""Kitchen Table: conversation guides about work, answered without names."""
