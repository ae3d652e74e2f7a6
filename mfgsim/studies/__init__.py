"""Studies: each one a TOML file -> a measurement on many runs -> tables and figures.

Every study module has the same three functions:

* ``load(path)`` reads and validates its file into a frozen study;
* ``run(study, workers=None, dask=None)`` runs it on an engine (a process pool or Dask)
  and returns a frozen result, writing nothing;
* ``write(result, out_root)`` writes its Parquet tables and figures under
  ``out_root / <name>`` and returns that folder.

:mod:`~mfgsim.studies.calibration` closes the loop book -> impact -> MFG -> book,
:mod:`~mfgsim.studies.impact` measures meta-order impact laws, and
:mod:`~mfgsim.studies.makers` compares N market makers with their mean field.
"""
