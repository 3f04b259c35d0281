"""tunebench: which specialization strategy fits my task?

Data flows CLI → `config.ExperimentSpec` → `runs.runner.run_experiment` → one run folder per
(model, method, seed) cell → `report` reads the run store back.
"""

__version__ = "0.1.0"
