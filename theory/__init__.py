"""Symbolic derivations (sympy), one module per result; each is tested against physdiff.

Run from a checkout (not installed): ``python -m theory.processes`` prints a derivation.
"""
