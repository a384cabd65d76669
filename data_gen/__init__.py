"""Raw puzzles -> datasets on disk (solvers, generators, the ARC JSON builder)."""
