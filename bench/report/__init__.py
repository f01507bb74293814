"""Reports from stored records: the COPF paper's tables and figures, beside the paper's numbers.

* ``paper`` / ``paper_numbers.toml``: the paper's own numbers (Tables 1-6), transcribed as data.
* ``results``: find the records of an experiment's cells again, or say why a cell is empty.
* ``significance``: the tests behind a table's star (over runs, and over users).
* ``tables``: Tables 2-6 as markdown, LaTeX, CSV or plain text; ``sweeps``: Figures 3-5 as tables.
* ``datasets``: Table 1 and the Figure 6 behavior patterns from the dataset layer.
* ``figures``: the figures (matplotlib, Agg backend), PNG and PDF at paper column width.

The command is ``bench report NAME`` (``bench.commands.report``); experiments live in
``bench/experiments/``.
"""
