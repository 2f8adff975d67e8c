"""The evidence study: its rows and commands (design), its report (report)."""
