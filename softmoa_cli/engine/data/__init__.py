"""Audio I/O, features, data sets and the feature cache."""
