"""The lab sensor's CoAP server (aiocoap): a temperature resource and `/.well-known/core`, open
to anyone, as constrained sensors ship. ``python -m engine.lab.coap_device`` serves it.
"""

from __future__ import annotations

import asyncio

import aiocoap
import aiocoap.resource as resource


class Temperature(resource.Resource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=b'{"celsius": 21.5}', content_format=50)


class Firmware(resource.Resource):
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=b"sensor-fw 2.1.0", content_format=0)


async def serve(port: int = 5683) -> None:
    root = resource.Site()
    root.add_resource(
        [".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader)
    )
    root.add_resource(["sensors", "temperature"], Temperature())
    root.add_resource(["firmware"], Firmware())
    await aiocoap.Context.create_server_context(root, bind=("0.0.0.0", port))
    await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(serve())
