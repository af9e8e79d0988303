"""The read API: KPIs, the audit, customer profiles and read-only SQL over the lakehouse."""
