"""End-to-end tests: real receiver and worker processes, real containers, the real alert loop."""
