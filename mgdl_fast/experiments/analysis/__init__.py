"""Analysis tools: Hessians and the spectrum of the gradient-descent iteration (PROTOCOL 4),
eigenvalue tracking during training, and learning-rate sweeps (PROTOCOL 5)."""
