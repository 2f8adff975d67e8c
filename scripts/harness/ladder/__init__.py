"""The GaP ladder: its commands (design), what each C-GaP step keeps (steps), its report (report)."""
