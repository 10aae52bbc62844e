"""Template tags of the trials app (``{% load ecrf %}``: the eCRF's)."""
