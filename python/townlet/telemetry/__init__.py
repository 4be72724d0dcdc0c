"""PPO telemetry: the record models (`records`), the writer, one JSONL reader and one follower, and the tools
behind `townlet telemetry validate|watch|summary` (`validate`, `watch`, `summary`, `plots`)."""
