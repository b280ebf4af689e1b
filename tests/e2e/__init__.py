"""End-to-end tests on the real local cluster of ``scripts/local-cluster``."""
