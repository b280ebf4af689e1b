"""The controller: reconciles Devbox, Runtime and DevboxRelease resources into pods,
services, secrets and ingresses, and drives stop → commit → start.

Not implemented yet (issue: the controller); :mod:`app.controller.runner` holds the entry
point that ``devboxctl serve`` starts.
"""
