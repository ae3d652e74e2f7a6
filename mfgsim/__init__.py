"""mfgsim's application layer: the command line, campaigns, calibration, the demo, TOML
configs, and the atomic file output (:mod:`mfgsim.io`) that every package writes with.

The engines live beside it: ``simulator`` (order book, agents, market loop), ``mfg``
(closed forms, N-player games, the finite-difference solver) and ``analysis`` (readers,
metrics, fits, figures). They never import this package's modules except ``mfgsim.io``.
"""
