"""sim-v3's labels from blind raters (issue 24): the labeller fitted to a rated calibration
panel, from the measurements of ``diagnose`` and the simulator's truth. It sits above both
(and above ``annotate``, whose panel it reads), so it has its own step of the flow."""
