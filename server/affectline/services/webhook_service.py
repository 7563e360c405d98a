"""WebhookService: campaigns register, list and delete the endpoints their events go to."""

from __future__ import annotations

import asyncio

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from affectline.services.proto_convert import timestamp
from affectline.services.validation import check_id, check_text
from affectline.v1 import webhooks_pb2
from affectline.webhooks.events import EVENTS
from affectline.webhooks.store import WebhookRecord, WebhookStore
from affectline.webhooks.urls import BadEndpoint, EndpointPolicy

MAX_DESCRIPTION_CHARS = 500


def _message(record: WebhookRecord) -> webhooks_pb2.Webhook:
    return webhooks_pb2.Webhook(
        webhook_id=record.webhook_id, video_id=record.video_id, url=record.url, events=record.events,
        description=record.description, created_at=timestamp(record.created_at),
    )


class WebhookService:
    def __init__(self, store: WebhookStore, policy: EndpointPolicy) -> None:
        self._store = store
        self._policy = policy

    async def register_webhook(self, request: webhooks_pb2.RegisterWebhookRequest, ctx: object = None) -> webhooks_pb2.RegisterWebhookResponse:
        check_id(request.video_id, "video_id")
        try:
            url = self._policy.check(request.url)
        except BadEndpoint as exc:
            raise ConnectError(Code.INVALID_ARGUMENT, str(exc)) from exc
        events = tuple(dict.fromkeys(request.events)) or EVENTS
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unknown events {unknown}; known: {list(EVENTS)}")
        check_text(request.description, "description", MAX_DESCRIPTION_CHARS)
        record, secret = await asyncio.to_thread(self._store.create, request.video_id, url, events, request.description)
        return webhooks_pb2.RegisterWebhookResponse(webhook=_message(record), signing_secret=secret)

    async def list_webhooks(self, request: webhooks_pb2.ListWebhooksRequest, ctx: object = None) -> webhooks_pb2.ListWebhooksResponse:
        check_id(request.video_id, "video_id", allow_empty=True)
        records = await asyncio.to_thread(self._store.endpoints, request.video_id)
        return webhooks_pb2.ListWebhooksResponse(webhooks=[_message(r) for r in records])

    async def delete_webhook(self, request: webhooks_pb2.DeleteWebhookRequest, ctx: object = None) -> webhooks_pb2.DeleteWebhookResponse:
        if not request.webhook_id:
            raise ConnectError(Code.INVALID_ARGUMENT, "webhook_id is required")
        if not await asyncio.to_thread(self._store.delete, request.webhook_id):
            raise ConnectError(Code.NOT_FOUND, f"unknown webhook {request.webhook_id!r}")
        return webhooks_pb2.DeleteWebhookResponse()
