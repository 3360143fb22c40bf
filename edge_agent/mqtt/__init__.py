"""The network edge: the only package that imports paho-mqtt.

- `link`: the agent's long-lived connection (session, manual acks, results, reconnects);
- `operator`: short-lived clients for the workstation's `model push` and `model status`.
"""
