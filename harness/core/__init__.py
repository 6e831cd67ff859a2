"""The core every other layer stands on: the run configuration and its presets, the record
schema (what a run leaves behind), and the process's memory policy. Nothing here imports a
component, the engine or anything above it."""
