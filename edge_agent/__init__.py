"""edge-agent: tag MQTT text messages with a quantized SqueezeBERT classifier on the CPU."""

from typing import Final

__version__: Final = "0.1.0"
