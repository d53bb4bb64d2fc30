"""A module that fails while importing (what a typo in a user's app does)."""

from baton import App

app = App("broken")
raise RuntimeError("the database URL is not set")
