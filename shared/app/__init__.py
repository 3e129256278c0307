"""Start-up wiring: `Deps`, services and their registry, and the facade with the seed's
method names (`route`, `select_best_agent`, `execute_with_self_correction`, ...).

The top of `shared`: it may import every other layer. Services and `raptorflow` build on it.
"""
