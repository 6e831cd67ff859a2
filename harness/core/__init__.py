"""The core every other layer stands on: the run configuration and its presets, the record
schema (what a run leaves behind: records.py and its typed sections, record_cost.py and
record_sections.py, whose metrics declare their metadata in metrics.py), the statistics every
page uses (stats.py), and the process's memory policy. Nothing here imports a component, the
engine or anything above it."""
