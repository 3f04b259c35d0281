"""What the fork server of runs/child.py imports before it forks any run: the libraries made quiet first
(as the CLI makes them: the server is not a CLI process, and bitsandbytes warns on import), then the slow
imports every run makes (torch, transformers, PEFT, the run itself), so that no run pays for them."""

from tunebench.core.quiet import quiet_libraries

quiet_libraries()

import peft  # noqa: E402, F401  -- imported for the forks, after the libraries are quiet
import torch  # noqa: E402, F401
import transformers  # noqa: E402, F401

import tunebench.runs.cell  # noqa: E402, F401
