"""Importers (lab files, visit files through an import map) and the analysis-dataset exporter.

Validation runs first over the whole file (:mod:`hepatrial.ingest.validate`); nothing is written
unless every row passes, and then everything is written in one transaction.
"""
