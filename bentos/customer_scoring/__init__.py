"""The customer scoring service: churn and lifetime value of customers, from Feast's online
store and the promoted models in the BentoML model store."""
