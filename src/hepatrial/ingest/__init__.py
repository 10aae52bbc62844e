"""Importers (participants, lab files, visit files through an import map) and the exporter.

* :func:`hepatrial.ingest.participants.import_participants` (``hepatrial import
  participants``): screening, consent, eligibility and enrolment through the store's services,
  in one transaction (all-or-nothing; a dry run is rolled back).
* :func:`hepatrial.ingest.importer.import_labs` / :func:`~hepatrial.ingest.visits.import_visits`
  (``hepatrial import labs|visits``): validation first over the whole file
  (:mod:`hepatrial.ingest.validate`, pure pandas); nothing is written unless every row passes,
  then everything is written in one transaction with history and audit-ledger entries
  (:mod:`hepatrial.ingest.bulk`). Re-imports are idempotent; changed values need a reason.
* :mod:`hepatrial.ingest.export` (``hepatrial export dataset|participants``): ``dataset()``,
  ``participants()``, ``adverse_events()`` and ``trial_data()`` (docs/contracts.md §1-§5), read
  through :mod:`hepatrial.trials.selectors` only, with derived scores per visit from
  :func:`hepatrial.scores.score_columns`; deterministic output.

Rows in reject lists are 1-based data rows (row 1 = the first line after the header).
"""
