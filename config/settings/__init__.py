"""Settings split by where Lattice runs: base, local (embedded default), test, production."""
