"""``python -m agents`` runs the ``baton`` CLI."""

from agents.cli import main

raise SystemExit(main())
