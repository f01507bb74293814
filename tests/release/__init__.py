"""Our models against the authors' released code, one training step each (issue 23)."""
