"""An OpenAI-compatible server for a base model and the artifacts of a comparison.

Requests for different LoRA-family adapters share one batch (PEFT's `adapter_names`); other artifacts
(whole models, prefix/prompt tuning, adapters PEFT cannot mix) are served in batches of their own.
Modules: options (flags and limits), artifacts (what a folder holds), prompts (serving prompting runs),
lanes (models and who may share a batch), decode (one batch of generation), engine (queue, scheduler and
worker thread), catalog (served names, admin load/unload), protocol (OpenAI's wire format), app (FastAPI
routes and middleware), server (assembling and running).
"""

from tunebench.core.errors import TunebenchError
from tunebench.serve.options import Limits, ServeOptions

__all__ = ["Limits", "ServeOptions", "serve"]


def serve(options: ServeOptions) -> None:
    """Run the server until interrupted; see server.serve."""
    try:  # lazy: the server needs the optional web stack (fastapi, uvicorn), which may be absent
        from tunebench.serve.server import serve as run
    except ImportError as e:
        raise TunebenchError(
            f"tunebench serve needs {e.name or 'its web stack'}: pip install 'tunebench[serve]'"
        ) from None
    run(options)
