"""Example apps: ``baton worker --app examples.notebook_app:app --all-roles``."""
