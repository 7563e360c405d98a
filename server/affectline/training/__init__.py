"""Training pipeline for Affectline's own expression model (needs the `train` extra: torch)."""
