"""`python -m affectline.bench`: the serving path measured against the raw model, in one run."""
