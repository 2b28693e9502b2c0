"""r1envs verifiers: math answers (sympy equivalence) and code (sandboxed tests)."""
