"""From the run store to tables: the data step (rows) apart from rendering (terminal)."""
