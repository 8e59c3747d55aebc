"""SQL over the platform's stored data: current versions, or exactly what a materialization read."""
