"""Multiple-choice benchmarks: accuracy, confidence and calibration per question, and the transfer
of both across training stages."""
