"""``python -m app.client``: the whole ``devboxctl`` (used when its script is not on PATH)."""

from app.cli import main

main()
