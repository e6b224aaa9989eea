"""Workflows: a named, versioned list of steps run per recipient, on the one delivery pipeline.

definitions.py states and checks what a workflow may say (pure); trigger.py starts a run (the API send's idempotency
reservation); engine.py advances a run step by step (claim, act, record); steps.py holds what each kind of step does;
facts.py reads the outcome of what a step sent from its notification and delivery rows.
"""
