"""Stats, Prometheus metrics, logging and systemd notifications."""
