"""Importers (lab files, visit files through an import map) and the analysis-dataset exporter.

* :func:`hepatrial.ingest.importer.import_labs` / :func:`~hepatrial.ingest.importer.import_visits`
  (``hepatrial import labs|visits``): validation first over the whole file
  (:mod:`hepatrial.ingest.validate`, pure pandas); nothing is written unless every row passes,
  then everything is written in one transaction with history and audit-ledger entries
  (:mod:`hepatrial.ingest.bulk`). Re-imports are idempotent; changed values need a reason.
* :mod:`hepatrial.ingest.export` (``hepatrial export dataset``): ``dataset()``,
  ``participants()``, ``adverse_events()`` and ``trial_data()`` (docs/contracts.md §1-§4), with
  derived scores per visit from :func:`hepatrial.scores.score_columns`; deterministic output.

Rows in reject lists are 1-based data rows (row 1 = the first line after the header).
"""
