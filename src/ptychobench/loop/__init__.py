"""Closed loop (issue 12): score parameter advice by what it does to the reconstruction.

On simulated data the truth is known, so a recommendation can be applied in pty-chi and
its reconstruction compared with the truth: :mod:`.advice` turns predicted labels into one
parameter set, :mod:`.cache` reconstructs (cached, resumable, in parallel), :mod:`.payoff`
scores a run's cells, :mod:`.rounds` lets a model advise over several rounds.
"""
