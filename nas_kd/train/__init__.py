"""Trainers: the reference teacher (``teacher``); shared optimisation pieces (``common``)."""
