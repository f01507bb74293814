"""Single-behavior models: trained on the target behavior (or one merged graph) only."""
