"""Libraries made quiet for a command line: their warnings and progress bars would drown tunebench's own
progress. Called by the CLI, and by each run's own process before it imports them (runs/preload.py)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Idempotent: cheap to call again."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    # bitsandbytes warns on every import that an optional CPU kernel package is absent; its own fallback works.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        # lazy: transformers takes a second to import; only a parsed command needs it quiet
        from transformers.utils import logging as hf_logging  # lazy: slow import

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # per-run weight loading bars would drown the run's own progress
    except ImportError:
        pass
