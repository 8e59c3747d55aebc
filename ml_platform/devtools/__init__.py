"""Developer and CI tooling; nothing here is imported by the code location."""
