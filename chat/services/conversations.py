"""Conversation writes: create (or build, unsaved, for a first turn), open a socket's, rename, select a
profile, archive, delete."""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from profiles.errors import InvalidInput, NotFound, ProfileUnavailable
from profiles.mounts import Mount
from profiles.resolution import Resolution
from profiles.selectors import profile_resolve, registry_get
from profiles.timestamps import now_ms
from profiles.validation import canonical_slug, ensure_storable, parse_profile_ref

from ..errors import ConversationForbidden
from ..models import Conversation, Turn
from ..selectors import (
    conversation_check,
    conversation_find,
    conversation_resolve,
    mount_default_registry,
)
from ..sequencer import FIRST_MARK

log = logging.getLogger(__name__)


def conversation_create(
    *,
    owner: Any,
    mount: Mount,
    conv_id: uuid.UUID | None = None,
    registry: str | None = None,
    profile: str | None = None,
    title: str = "",
    purpose: str = "",
    last_seq: int = 0,
) -> Conversation:
    """`profile` (a ref: `slug`, `slug@3`, `slug@label`) and `registry` given at creation become the
    conversation's own selection (checked first). `purpose`: "evaluation" for a case of a run (in no list).
    `last_seq`: frame numbers reserved with the row (`chat.sequencer.FIRST_MARK` for a creator that primes
    the sequencer)."""
    conversation = conversation_build(
        owner=owner, mount=mount, conv_id=conv_id, registry=registry, profile=profile, title=title, last_seq=last_seq
    )
    conversation.purpose = purpose
    conversation.save(force_insert=True)
    return conversation


def conversation_build(
    *,
    owner: Any,
    mount: Mount,
    conv_id: uuid.UUID | None = None,
    registry: str | None = None,
    profile: str | None = None,
    title: str = "",
    resolution: Resolution | None = None,
    resolved_by_submission: bool = False,
    last_seq: int = 0,
) -> Conversation:
    """A new conversation, checked but not saved: `conversation_create` saves it alone, `turn_submit`
    with its first turn (one transaction). `resolution`: `profile` as the caller just resolved it for
    the owner (not resolved again); `resolved_by_submission`: its first turn's submission resolves it
    (`turn_submit(resolve=...)`), so nothing is read here."""
    selected_registry = selected_profile = selected_at = ""
    if profile and resolved_by_submission:
        ref = parse_profile_ref(profile, field="profile")
        selected_registry = canonical_slug(registry or mount.default_registry, field="registry")
        selected_profile, selected_at = ref.slug, ref.at
    elif profile:
        ref = parse_profile_ref(profile, field="profile")
        if resolution is None:
            resolution = profile_resolve(
                registry_slug=registry or mount.default_registry, profile_slug=str(ref), field="profile", user=owner
            )
        selected_registry, selected_profile, selected_at = resolution.registry, resolution.profile, ref.at
    elif registry:
        registry_get(registry)
        selected_registry = canonical_slug(registry, field="registry")
    return Conversation(
        id=conv_id or uuid.uuid4(),
        owner=owner,
        mount=mount.name,
        last_seq=last_seq,
        title=title[:200],
        selected_registry=selected_registry,
        selected_profile=selected_profile,
        selected_at=selected_at,
    )


@dataclass(frozen=True)
class Opened:
    conversation: Conversation
    resolution: Resolution | None  # None: the profile it runs on cannot be used now (`unavailable` says why)
    created: bool
    unavailable: ProfileUnavailable | None = None
    refused: ProfileUnavailable | None = None  # the socket's `profile` for a new conversation, not selected


def conversation_open(
    *, conv_id: uuid.UUID, user: Any, mount: Mount, registry: str | None = None, profile: str | None = None
) -> Opened:
    """A socket's conversation: loaded, or created with the socket's profile/registry as its own
    selection; and the runtime it resolves to now. One call, so a socket opens in one database trip.

    A profile that cannot be used (its stored stack does not resolve) never refuses the socket: the
    socket's `profile` is not selected (`refused`), and a conversation whose profile cannot run opens
    without a runtime (`unavailable`); its turns fail with that error until the profile is fixed."""
    created, refused = False, None
    found = conversation_find(conv_id=conv_id)
    if found is not None:
        conversation = conversation_check(found, user=user, mount=mount)
    else:
        try:
            # Its first block of frame numbers reserved with the row: the socket primes the sequencer.
            conversation = conversation_create(
                owner=user, mount=mount, conv_id=conv_id, registry=registry, profile=profile, last_seq=FIRST_MARK
            )
        except ProfileUnavailable as exc:
            refused = exc
            conversation = conversation_create(
                owner=user, mount=mount, conv_id=conv_id, registry=registry, last_seq=FIRST_MARK
            )
        created = True
    try:
        resolution = conversation_resolve(conversation=conversation, user=user)
    except ProfileUnavailable as exc:
        return Opened(conversation, None, created, unavailable=exc, refused=refused)
    return Opened(conversation, resolution, created, refused=refused)


@transaction.atomic
def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    if not isinstance(title, str) or len(title) > 200:
        raise InvalidInput("title must be a string of at most 200 characters", field="title")
    ensure_storable(title, field="title")
    conversation.title = title.strip()
    # An update, not save(): a conversation deleted meanwhile is a 404, not a 500.
    if not Conversation.objects.filter(pk=conversation.pk).update(title=conversation.title, updated_at_ms=now_ms()):
        raise NotFound("conversation not found", field="conv_id")
    return conversation


@transaction.atomic
def conversation_select_profile(
    *, conversation: Conversation, user: Any, slug: Any, registry: Any = None
) -> Resolution:
    """`profile.select`: this conversation only, from its next turn. `slug` is a ref (`slug`, `slug@3`,
    `slug@label`); None clears the conversation's own selection, so it follows the user's current
    profile again. A profile that cannot be used (`ProfileUnavailable`: its stack does not resolve) is
    refused either way, before anything changes."""
    if slug is None:
        following = copy.copy(conversation)
        following.selected_registry = following.selected_profile = following.selected_at = ""
        resolution = conversation_resolve(conversation=following, user=user)
        Conversation.objects.filter(pk=conversation.pk).update(
            selected_registry="", selected_profile="", selected_at=""
        )
        conversation.selected_registry = conversation.selected_profile = conversation.selected_at = ""
        return resolution
    ref = parse_profile_ref(slug, field="slug")
    mount_registry = conversation.selected_registry or mount_default_registry(conversation)
    resolution = profile_resolve(registry_slug=registry or mount_registry, profile_slug=str(ref), user=user)
    Conversation.objects.filter(pk=conversation.pk).update(
        selected_registry=resolution.registry, selected_profile=resolution.profile, selected_at=ref.at
    )
    conversation.selected_registry, conversation.selected_profile = resolution.registry, resolution.profile
    conversation.selected_at = ref.at
    return resolution


@transaction.atomic
def conversation_update(*, conversation: Conversation, title: Any = None, archived: Any = None) -> Conversation:
    """PATCH: rename (`title`) and/or archive (`archived: true`) or bring back (`false`). An archived
    conversation keeps everything; it only leaves the default list."""
    changes: dict[str, Any] = {}
    if title is not None:
        if not isinstance(title, str) or len(title) > 200:
            raise InvalidInput("title must be a string of at most 200 characters", field="title")
        ensure_storable(title, field="title")
        changes["title"] = title.strip()
    if archived is not None:
        if not isinstance(archived, bool):
            raise InvalidInput("archived must be true or false", field="archived")
        changes["archived_at_ms"] = (conversation.archived_at_ms or now_ms()) if archived else None
    if not changes:
        raise InvalidInput("nothing to change: send title and/or archived", field="title")
    changes["updated_at_ms"] = now_ms()
    if not Conversation.objects.filter(pk=conversation.pk).update(**changes):
        raise NotFound("conversation not found", field="conv_id")
    for name, value in changes.items():
        setattr(conversation, name, value)
    return conversation


@transaction.atomic
def conversation_delete(*, conversation: Conversation, user: Any) -> list[str]:
    """Delete the owner's conversation with its turns and events. Its queued or running turns are
    cancelled first, in the same transaction: a worker's checkpoint and finish only write a turn that is
    still running, so the worker running one writes nothing more and stops at its next checkpoint
    (`turns.conversation_delete` also asks it to stop at once). Returns the ids of the turns cancelled."""
    if conversation.owner_id != user.pk:
        raise ConversationForbidden("this conversation belongs to another user", field="conv_id")
    open_turns = Turn.objects.filter(
        conversation_id=conversation.pk, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]
    )
    cancelled = [str(pk) for pk in open_turns.values_list("pk", flat=True)]
    if cancelled:
        Turn.objects.filter(pk__in=cancelled, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]).update(
            status=Turn.Status.CANCELLED, finished_at_ms=now_ms(), lease_until_ms=None
        )
    if not Conversation.objects.filter(pk=conversation.pk).exists():
        raise NotFound("conversation not found", field="conv_id")
    Conversation.objects.filter(pk=conversation.pk).delete()  # its turns and events cascade
    return cancelled
