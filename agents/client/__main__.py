"""``python -m baton`` runs the ``baton`` CLI."""

from baton.agents.cli import main

raise SystemExit(main())
