"""The RPC methods of our services, read from the proto descriptors.

Every transport (native gRPC, Connect/gRPC-web, JSON-RPC) routes with this one
table, so a method added to protos/ appears on all of them at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import grpc
from connectrpc.code import Code
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass


@dataclass(frozen=True, slots=True)
class RpcMethod:
    service: str  # "affectline.v1.SessionService"
    name: str  # "StartSession"
    input: type[Message]
    output: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def attr(self) -> str:
        """Python method name on the implementation class ("start_session")."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServiceBinding:
    """A service descriptor and the one object that implements it."""

    descriptor: ServiceDescriptor
    impl: Any

    @property
    def name(self) -> str:
        return self.descriptor.full_name

    def methods(self) -> list[RpcMethod]:
        return [
            RpcMethod(
                service=self.descriptor.full_name,
                name=m.name,
                input=GetMessageClass(m.input_type),
                output=GetMessageClass(m.output_type),
                client_streaming=m.client_streaming,
                server_streaming=m.server_streaming,
            )
            for m in self.descriptor.methods
        ]


def grpc_status(code: Code) -> grpc.StatusCode:
    return grpc.StatusCode.CANCELLED if code is Code.CANCELED else grpc.StatusCode[code.name]
