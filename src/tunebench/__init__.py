"""tunebench: which specialization strategy fits my task?

Data flows CLI → `config.ExperimentSpec` → `runs.runner.run_experiment` (the grid) → `runs.cell.run_cell`,
one run folder per (model, method, seed) cell → `report` reads the run store back. README "How it is
built" draws the layers.
"""

__version__ = "0.1.0"
