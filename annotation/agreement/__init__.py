"""Inter-rater agreement and rater quality, computed from judgment arrays without Django."""
