"""What scoring needs at serving time as much as at training time (no Dagster imports)."""
