"""The papers' experiments built on the engine: the function-approximation study with its MSDL
comparator (approx/) and the analyses of training (analysis/: Hessians, Lanczos, eigenvalue
tracking, learning-rate sweeps)."""
