"""``bench tune``: hyper-parameter search on validation, trial by trial through the runner.

``space`` parses and checks search-space files, ``search`` picks configurations (grid, random,
Optuna), ``plan`` turns configurations into trials and batches, ``manifest`` records what a tune
tried so ``bench report tune`` can rank it again from the records.
"""
