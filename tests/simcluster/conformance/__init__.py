"""Conformance suite: the simulated API server must answer exactly like kube-apiserver v1.20.2.

Every test here is written against the real Kubernetes API and must pass unchanged against a
real v1.20.2 cluster (``DEVBOX_TEST_KUBECONFIG=/path/to/kubeconfig``).  A difference is a defect
of the simulation.  Ground truth: ``/work/shared/K8S-API-FACTS.md``.
"""
