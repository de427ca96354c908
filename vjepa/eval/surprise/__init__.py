"""Violation of expectation: score possible / impossible video pairs by the predictor's surprise."""
