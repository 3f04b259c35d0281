"""Running an experiment: its grid (grid.py), one run (cell.py), the learning-rate search (selection.py),
where runs execute (executors.py), and what a run records (record.py); runner.py ties them together."""
