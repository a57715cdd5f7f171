"""Training loops (SFT now; RL and preference learning build on the same helpers)."""
