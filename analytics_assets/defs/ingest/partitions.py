"""One dynamic partition per landed micro-batch file."""

import dagster as dg

batches = dg.DynamicPartitionsDefinition(name="batches")
