"""BentoML services (one folder per service, each with its ``bentofile.yaml``)."""
