"""``bench campaign``: fill a device window with the missing trials that matter most.

- ``priority``: which experiments (and rows) come first, from a TOML file;
- ``estimate``: what a group of trials costs, from committed perf and trial records;
- ``plan``: the missing trials of each priority entry, grouped as the runner trains them, with
  their estimates and which fit a budget;
- ``run``: trains the groups that fit, stopping (checkpointed) before the budget runs out;
- ``bundle``: packs what a campaign made into a few checksummed files and merges them back.
"""
