"""Offline evaluation of candidate policies over the logs: replays the decision pipeline's scoring
and exploration, so it sits above them (beside the simulation), not inside `learning/`."""
