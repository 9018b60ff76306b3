"""The run service and its description: what every front door (the command line, the Python
API, a future server) calls to fit an image into a run directory.

    import mgdl_fast as mf
    run = mf.RunConfig.load("runs/x/run.toml")          # or RunConfig() and its sections
    run.outputs.out = "runs/y"
    outcome = mf.run_fit(run)                            # outcome.status, .result, .out
"""

from .config import (
    InputSection,
    ModelSection,
    OutputsSection,
    ResourcesSection,
    RunConfig,
    TaskSection,
    TrainingSection,
)
from .service import Outcome, Reporter, run_fit

__all__ = [
    "InputSection",
    "ModelSection",
    "Outcome",
    "OutputsSection",
    "Reporter",
    "ResourcesSection",
    "RunConfig",
    "TaskSection",
    "TrainingSection",
    "run_fit",
]
