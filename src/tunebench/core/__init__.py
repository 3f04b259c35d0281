"""The bottom layer: what every other part may use and that uses no other part of tunebench.

errors (the exceptions a user sees), typed (dataclasses built from YAML and flags, with named errors),
registry (one list per kind of thing), ui (the console), units (sizes, counts, durations as people write
them), paths (where caches live) and store (the run store's folder layout and atomic writes).
"""
