"""PtychoBench-Sim: simulated ptychography experiments with known defects, reconstructed
with pty-chi and labelled by measurement. Needs the ``sim`` extra (ptychi, torch).

Modules, in the order data flows: :mod:`.objects` (specimens), :mod:`.instruments`
(probes, scans), :mod:`.forward` (diffraction), :mod:`.defects` (experiments and
acquisition), :mod:`.recon` (ptychi LSQML), :mod:`.measure` (artifact metrics and
labels), :mod:`.options` (the 24 options as parameter changes), :mod:`.pipeline` (one
experiment end to end), :mod:`.text` (parameter-task text), :mod:`.build` (the dataset),
:mod:`.report` (validation report), :mod:`.cli` (``ptychobench generate``).
"""
