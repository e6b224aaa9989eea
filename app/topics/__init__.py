"""Topics: who is in which group, and sending to a group through the campaign batch path (app/campaigns/runs.py)."""
