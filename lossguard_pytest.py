"""The lossguard pytest plugin (entry point ``pytest11: lossguard``).

Loading it imports neither TensorFlow nor Keras; the fixtures do, on use.
"""
