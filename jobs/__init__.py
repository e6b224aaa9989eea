"""RQ job functions, the worker and the scheduler entry points."""
