"""An embedded MQTT broker (amqtt), so `trygg run` works on a machine with none installed.

Production points TRYGG_MQTT_URL at Mosquitto or EMQX instead; see deploy/.
"""

from __future__ import annotations

import logging
from types import TracebackType

from amqtt.broker import Broker


class EmbeddedBroker:
    """An embedded MQTT broker (amqtt), so `trygg run` works on a machine with none
    installed. Anonymous and without ACLs: for the demo, never for production."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._broker = Broker({
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        })

    async def __aenter__(self) -> EmbeddedBroker:
        # amqtt logs every connection at INFO; our own logs say what matters.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        await self._broker.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._broker.shutdown()
