"""Evaluation of a frozen backbone: probes (attentive, linear, kNN) and the
violation-of-expectation (surprise) test."""
