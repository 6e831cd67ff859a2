"""What a forward pass measured, accumulated over a split or a run: cost, routing against the
task's ground truth, routing collapse, routing telemetry. Each meter reads the per-layer reports
the model's forward returns; nothing is read back from the modules."""
