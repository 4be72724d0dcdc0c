"""Training: PPO (and the env adapters and networks it uses)."""
