"""The rule that makes a parameter option a label, in one place for the build and its
validation report (which prints it): an option is a label when it lowers the
reconstruction error against the truth by at least GAIN_MARGIN (a fraction) and by at
least MIN_ABS_GAIN (error relative to the mean |object|)."""

GAIN_MARGIN = 0.10
MIN_ABS_GAIN = 0.005
