"""How faithful a rebuild is: metrics shared by recall, training and the benchmarks."""
