"""A chat completion is a turn of a conversation of the caller's.

`completion_create` turns an OpenAI request into what the REST API and the websocket send (a prompt and
request overrides: `inputs`), checked against the profile's policy before anything is written, then
submits it through `chat.turns.turn_enqueue` (the one path of every turn: same queue, same runtime
record). The model picks the profile: a new conversation is created with it as its own selection (and
resolved by the write that stores it with its first turn), or the conversation named by
`X-Conversation-Id` is switched to it.

Earlier messages: the server keeps a conversation's context, so every answer can be traced to the
turns it saw. Without `X-Conversation-Id`, earlier user/assistant messages are refused (400): nothing
unrecorded reaches the engine. With it, they must be the conversation's last completed turns (what the
client got back from us), so clients that resend their whole history work and nothing is dropped.

Waiting for the turn and streaming it: `following`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db import transaction

from profiles.arms import RolloutSubject
from profiles.errors import InvalidInput, NotFound, ProfileError
from profiles.keys import scope_allows, scope_labels
from profiles.models import ApiKey
from profiles.mounts import Mount
from profiles.resolution import Resolution
from profiles.selectors import profile_resolve
from profiles.validation import ProfileRef, canonical_slug, parse_profile_ref

from .. import selectors as chat_selectors
from .. import services as chat_services
from ..models import Conversation
from ..sequencer import FIRST_MARK, get_sequencer
from ..turns import turn_enqueue
from ..writer import writer
from . import selectors
from .errors import ModelNotAllowed, ModelNotFound
from .following import Completion
from .inputs import CONVERSATION_HEADER, CompletionInput, as_request_params, completion_input

log = logging.getLogger(__name__)

NO_SEQ_LIMIT = 2**31 - 1
TITLE_CHARS = 60  # as the page titles a conversation from its first prompt


# --------------------------------------------------------------------------- models


def model_id(registry: str, slug: str, mount: Mount) -> str:
    """`slug` in the mount's default registry, `registry/slug` elsewhere."""
    return slug if registry == mount.default_registry else f"{registry}/{slug}"


def model_ref(model: str, mount: Mount) -> tuple[str, ProfileRef]:
    """(registry, profile ref) a model id names: `[registry/]slug`, pinned `slug@3` or following a label
    `slug@production`; a malformed id names no model (404)."""
    registry, _, ref = model.rpartition("/")
    try:
        return canonical_slug(registry or mount.default_registry, field="model"), parse_profile_ref(ref, field="model")
    except InvalidInput:
        raise ModelNotFound(model) from None


def model_list(*, mount: Mount, user: Any, key: ApiKey | None = None) -> list[selectors.ModelRow]:
    """The models `user` may use; with an API key, those its scopes cover (a label scope lists
    `slug@label`)."""
    rows = selectors.model_list(mount=mount, user=user)
    if key is None:
        return rows
    covered = (
        (row, scope_labels(key.scopes, registry=row.registry, slug=row.slug, default_registry=mount.default_registry))
        for row in rows
    )
    return [dataclasses.replace(row, label=label) for row, labels in covered for label in labels]


def check_key_scope(key: ApiKey | None, *, mount: Mount, model: str, registry: str, ref: ProfileRef) -> None:
    """403 `model_not_allowed` when an API key's scopes do not cover the model (the owner may use it:
    the caller checked that first, so a model the owner may not see stays a 404)."""
    if key is not None and not scope_allows(
        key.scopes, registry=registry, slug=ref.slug, label=ref.label, default_registry=mount.default_registry
    ):
        raise ModelNotAllowed(model, key.name)


def model_get(*, mount: Mount, model: str, user: Any, key: ApiKey | None = None) -> selectors.ModelRow:
    registry, ref = model_ref(model, mount)
    row = selectors.model_get(registry=registry, slug=ref.slug, user=user)
    if row is None:
        raise ModelNotFound(model)
    if ref.mode != "follow":  # the version or label must exist too
        try:
            profile_resolve(registry_slug=registry, profile_slug=str(ref), user=user)
        except NotFound:
            raise ModelNotFound(model) from None
    check_key_scope(key, mount=mount, model=model, registry=registry, ref=ref)
    return dataclasses.replace(row, label=ref.label) if ref.label else row


def _conversation_id(raw: str | None) -> uuid.UUID | None:
    if raw is None:
        return None
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise InvalidInput(
            f"{CONVERSATION_HEADER} must be a conversation id (a UUID)", field=CONVERSATION_HEADER
        ) from None


# --------------------------------------------------------------------------- the turn


def _resolve_model(
    *, user: Any, mount: Mount, data: CompletionInput, key: ApiKey | None, conv_id: uuid.UUID | None = None
) -> Resolution:
    """The model, with the overrides (checked against its policy), as the user may use it and the API key
    covers (a label's rollout picks the arm for the user, or for the new conversation `conv_id`)."""
    registry, ref = model_ref(data.model, mount)
    subject = RolloutSubject(user_id=user.pk, conversation_id=conv_id)
    try:
        resolution = profile_resolve(
            registry_slug=registry,
            profile_slug=str(ref),
            request_overrides=data.overrides(),
            user=user,
            subject=subject,
        )
    except NotFound as exc:
        if exc.field in ("registry", "slug"):
            raise ModelNotFound(data.model) from None
        raise
    check_key_scope(key, mount=mount, model=data.model, registry=registry, ref=ref)
    return resolution


def _new_conversation(*, user: Any, mount: Mount, data: CompletionInput) -> Conversation:
    """A new conversation selecting the model, not saved: it is stored with its first turn (one
    transaction), whose write resolves the model first (`_first_turn_resolution`). No query."""
    registry, ref = model_ref(data.model, mount)
    return chat_services.conversation_build(
        owner=user,
        mount=mount,
        registry=registry,
        profile=str(ref),
        title=" ".join(data.prompt.split())[:TITLE_CHARS],
        resolved_by_submission=True,
        last_seq=FIRST_MARK,  # its first frame numbers reserved with the row (`submit` primes the sequencer)
    )


def _first_turn_resolution(
    *, user: Any, mount: Mount, data: CompletionInput, key: ApiKey | None, conv_id: uuid.UUID
) -> Resolution:
    """The model of a new conversation resolved by its first turn's write: a refusal stores nothing."""
    resolution = _resolve_model(user=user, mount=mount, data=data, key=key, conv_id=conv_id)
    if data.history:
        raise InvalidInput(
            f"earlier user/assistant messages need {CONVERSATION_HEADER}: the server keeps a conversation's "
            f"context so every answer is traceable; send the {CONVERSATION_HEADER} a previous answer returned, "
            "or only the system messages and the new user message",
            field="messages",
        )
    return resolution


@transaction.atomic  # a write through the writer opens its own atomic block
def _named_conversation(
    *, user: Any, mount: Mount, data: CompletionInput, api_key: ApiKey | None, conv_id: uuid.UUID
) -> Conversation:
    """The model resolved before anything is written, then the named conversation (the caller's, in this
    mount, whose last completed turns are the earlier messages sent), switched to the model if it
    selects another (`api_key`: the request's, whose scopes apply; `key` is the writer's)."""
    resolution = _resolve_model(user=user, mount=mount, data=data, key=api_key)
    ref = str(model_ref(data.model, mount)[1])
    try:
        conversation = chat_selectors.conversation_get(conv_id=conv_id, user=user, mount=mount)
    except ProfileError as exc:
        if exc.field == "conv_id":
            exc.field = CONVERSATION_HEADER
        raise
    if data.history:
        stored = chat_selectors.conversation_history(
            conversation=conversation, before_seq=NO_SEQ_LIMIT, limit=len(data.history)
        )
        if [(p.strip(), r.strip()) for p, r in stored] != [(u.strip(), a.strip()) for u, a in data.history]:
            raise InvalidInput(
                f"the earlier messages are not this conversation's last {len(data.history)} completed turns: "
                f"send them as they were answered, or only the new user message ({CONVERSATION_HEADER} keeps "
                "the context)",
                field="messages",
            )
    if (conversation.selected_registry, chat_selectors.conversation_ref(conversation)) != (resolution.registry, ref):
        chat_services.conversation_select_profile(
            conversation=conversation, user=user, slug=ref, registry=resolution.registry
        )
    return conversation


async def completion_create(
    *,
    user: Any,
    mount: Mount,
    body: Mapping[str, Any],
    conversation_id: str | None = None,
    key: ApiKey | None = None,
) -> Completion:
    """A chat completion request as a turn (`submit`)."""
    return await submit(
        user=user, mount=mount, data=completion_input(body), conv_id=_conversation_id(conversation_id), key=key
    )


async def submit(
    *,
    user: Any,
    mount: Mount,
    data: CompletionInput,
    conv_id: uuid.UUID | None,
    key: ApiKey | None = None,
    metadata: dict[str, str] | None = None,
) -> Completion:
    """Submit a request of the OpenAI-compatible API as a turn (one path for every client:
    `turns.turn_enqueue`) of a new conversation, or of `conv_id`. A refused override, an unknown model, a
    model the API `key` does not cover or a full queue raises before anything is stored; the turn's tokens
    count against the key's `tpm`."""
    registry, ref = model_ref(data.model, mount)
    resolve: Callable[[], Resolution] | None = None
    with as_request_params(data):
        if conv_id is None:  # stored with the turn, in the same transaction
            conversation = _new_conversation(user=user, mount=mount, data=data)
            resolve = functools.partial(
                _first_turn_resolution, user=user, mount=mount, data=data, key=key, conv_id=conversation.pk
            )
            get_sequencer().prime(conversation.pk, mark=conversation.last_seq)  # nothing numbered yet
        else:
            conversation = await writer.write(
                _named_conversation, key=conv_id, user=user, mount=mount, data=data, api_key=key, conv_id=conv_id
            )
        submitted = await turn_enqueue(
            conversation=conversation,
            user=user,
            prompt=data.prompt,
            request_overrides=data.overrides() or None,
            resolve=resolve,
            api_key_id=key.pk if key is not None else None,
            metadata=metadata,
        )
    return Completion(
        conv_id=str(conversation.pk),
        turn_id=str(submitted.turn.pk),
        message_seq=submitted.frame["seq"] if submitted.frame else 0,
        mount=mount,
        model=model_id(registry, str(ref), mount),
        stream=data.stream,
        wait_seconds=settings.CHAT_ENGINE_TIMEOUT_SECONDS * 2,
        # Claimed with its submission: the turn as stored, its record included (no read when it starts).
        identity=submitted.turn if submitted.started is not None else None,
    )
