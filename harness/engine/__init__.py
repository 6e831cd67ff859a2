"""Running one router x operators x task combination: config, model, training, checkpoints."""
