"""Measurement tooling of kbqa: evaluation, benchmarks and model measurements (not part of the app).

``python -m evaluation eval|bench`` (:mod:`evaluation.cli`) and the single-purpose tools run as
``python -m evaluation.<module>``. This package imports the product (``kb``, ``models``,
``vector_store``, ``loaders``); nothing in the product imports it (``tests/test_import_rules.py``).
"""
