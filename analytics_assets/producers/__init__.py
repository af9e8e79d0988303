"""Event producers that write micro-batch files into the landing zone."""
