"""The run store (one folder per run) and the runner that fills it."""
