"""Multi-behavior models: an encoder over the behavior graphs with the decoder its paper gives it."""
