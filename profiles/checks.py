"""Project invariants as Django system checks."""
