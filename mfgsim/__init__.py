"""mfgsim's application layer: the command line, campaigns, studies, calibration, the demo
and TOML configs.

The engines live beside it and never import it: ``mfg`` (closed forms, N-player games,
the finite-difference and jump solvers; the ground floor, which also holds the argument
checks :mod:`mfg.validation` and the atomic writes :mod:`mfg.io` that every package uses),
``simulator`` (order book, agents, market loop) and ``analysis`` (readers, metrics, fits,
figures).

The scripting API::

    import mfgsim

    out = mfgsim.run_campaign("runs/experiment_a_particles.toml", workers=2)
    # or a dict with the TOML's structure: mfgsim.run_campaign({"campaign": {...}, ...})
    out.scan("summary").collect()      # a Polars LazyFrame with the table's fixed schema
    print(out.report().table)          # the convergence table (W1 against N, ...)
"""

from .campaign import CampaignOutput, run_campaign
from .config import ConfigError
from .specs import CampaignSpec, load_campaign

__all__ = ["CampaignOutput", "CampaignSpec", "ConfigError", "load_campaign", "run_campaign"]
