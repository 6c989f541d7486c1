"""Registries, profiles, their revision history and users' current selections.

Writes go through `profiles.services` only: it holds the versioning, the default-profile
invariant and validation in one transaction. Models declare what the database can enforce.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .timestamps import TimestampedMs


def default_protected_labels() -> list[str]:
    return ["production"]


class Registry(TimestampedMs):
    slug = models.CharField(max_length=128, unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    # RESTRICT: a profile cannot be deleted while it is the default, but deleting the registry
    # (which cascades to its profiles) is allowed.
    default_profile = models.ForeignKey("Profile", null=True, blank=True, on_delete=models.RESTRICT, related_name="+")
    version = models.PositiveIntegerField(default=1)
    tags = models.JSONField(default=list, blank=True)
    # Label names whose moves need `profiles.promote_profile` (the others need `change_profile`).
    protected_labels = models.JSONField(default=default_protected_labels, blank=True)
    # When set, a plain slug serves the profile's version under this label (its latest if it has none).
    serve_label = models.CharField(max_length=64, blank=True)
    # Names of the groups whose members may edit this registry's profiles (with the model permissions);
    # empty: whoever has the model permissions (`profiles.access`).
    editor_groups = models.JSONField(default=list, blank=True)
    # `[{"group": name, "profile": slug}]`, in order: a user without a selection of their own gets the
    # profile of the first entry whose group they are in, else the registry default.
    group_defaults = models.JSONField(default=list, blank=True)
    # Approvals: with n > 0, a protected label moves only through a request approved by n members of the
    # approver groups (or superusers), none of them its author (`profiles.approvals`).
    required_approvals = models.PositiveSmallIntegerField(default=0)
    approver_groups = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "registries"

    def __str__(self) -> str:
        return self.slug

    def is_default(self, profile_id: int | None) -> bool:
        """The one definition of "this is the registry's default profile" (by id, no query)."""
        return profile_id is not None and self.default_profile_id == profile_id


class Profile(models.Model):
    # indexed by profile_unique_slug_per_registry (its leading column)
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="profiles", db_index=False)
    slug = models.CharField(max_length=128)
    display_name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    runtime = models.JSONField(default=dict, blank=True)
    policy = models.JSONField(default=dict, blank=True)
    extensions = models.JSONField(default=dict, blank=True)
    # Base layers applied in order before this profile: `[{"registry", "slug", "version"?}]`.
    stack = models.JSONField(default=list, blank=True)
    # Names of the groups that may see and use it (sorted); empty: everyone (`profiles.access`).
    visible_to_groups = models.JSONField(default=list, blank=True)
    version = models.PositiveIntegerField(default=1)
    tags = models.JSONField(default=list, blank=True)
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()
    created_by = models.CharField(max_length=150, blank=True)
    updated_by = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=32, default="api")

    class Meta:
        ordering = ["registry__slug", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["registry", "slug"], name="profile_unique_slug_per_registry"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="profile_version_positive"),
        ]
        permissions = [("promote_profile", "Can move a protected label of a profile (promote a version)")]

    def __str__(self) -> str:
        return f"{self.registry.slug}/{self.slug}" if self.registry_id else self.slug

    @property
    def is_read_only(self) -> bool:
        return bool((self.policy or {}).get("read_only"))


class ProfileGroupAccess(models.Model):
    """One row per group named in a profile's `visible_to_groups`, written with it by the services: what
    lets a list filter by the user's groups in the database (`profiles.access.visible_filter`)."""

    # indexed by profile_group_access_unique (its leading column)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="group_access", db_index=False)
    group_name = models.CharField(max_length=150)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "group_name"], name="profile_group_access_unique"),
        ]
        indexes = [models.Index(fields=["group_name"], name="profile_group_access_group")]

    def __str__(self) -> str:
        return f"{self.profile_id}:{self.group_name}"


class ProfileRevision(models.Model):
    """One row per profile version, written by the same service call that writes the version.

    Kept after the profile is deleted (no FK cascade) so history answers "what was it then?".
    """

    registry_slug = models.CharField(max_length=128)
    profile_slug = models.CharField(max_length=128)
    profile_id_at_write = models.BigIntegerField()
    version = models.PositiveIntegerField()
    document = models.JSONField()
    change = models.CharField(max_length=500)
    source = models.CharField(max_length=32)
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["registry_slug", "profile_slug", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["profile_id_at_write", "version"], name="profile_revision_unique_version")
        ]
        indexes = [models.Index(fields=["registry_slug", "profile_slug", "version"])]

    def __str__(self) -> str:
        return f"{self.registry_slug}/{self.profile_slug}@{self.version}"


class LabelRollout(models.Model):
    """A split of a label's traffic between versions (`profiles.rollouts`): whoever follows the label gets
    an arm by a stable hash of (rollout, user or conversation). Halted by its guard or ended, it serves
    nobody; the label then serves its own version again."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        HALTED = "halted"
        ENDED = "ended"

    class Sticky(models.TextChoices):
        USER = "user"
        CONVERSATION = "conversation"

    # indexed by label_rollout_open (its leading column)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="rollouts", db_index=False)
    name = models.CharField(max_length=64)  # the label
    arms = models.JSONField()  # [{"version": int, "weight": int}], weights summing to 100
    sticky = models.CharField(max_length=16, choices=Sticky.choices, default=Sticky.USER)
    # {"max_failure_rate"?, "max_thumbs_down_rate"?, "max_latency_ms_p95"?, "min_turns"} or {}
    guard = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    halted_reason = models.CharField(max_length=300, blank=True)
    started_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()
    ended_at_ms = models.BigIntegerField(null=True, blank=True)  # halted or ended
    by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["profile", "name", "status"], name="label_rollout_open")]

    def __str__(self) -> str:
        arms = "/".join(f"v{a['version']}:{a['weight']}" for a in self.arms or [])
        return f"{self.profile_id}:{self.name} {arms} ({self.status})"


class ProfileLabel(models.Model):
    """A named pointer at one of a profile's versions (`production`, `staging`, ...)."""

    # indexed by profile_label_unique_name (its leading column)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="labels", db_index=False)
    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    updated_at_ms = models.BigIntegerField()
    updated_by = models.CharField(max_length=150, blank=True)
    # Its rollout, active or halted (ended: none). Read with the label in one query (a join).
    rollout = models.ForeignKey(LabelRollout, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["profile", "name"]
        constraints = [models.UniqueConstraint(fields=["profile", "name"], name="profile_label_unique_name")]

    def __str__(self) -> str:
        return f"{self.profile_id}:{self.name}->{self.version}"


class ProfileLabelMove(models.Model):
    """Every set, move and removal of a label: `from_version` None = created, `to_version` None = removed."""

    # indexed by profile_label_move_history (its leading column)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="label_moves", db_index=False)
    name = models.CharField(max_length=64)
    from_version = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.PositiveIntegerField(null=True, blank=True)
    by = models.CharField(max_length=150, blank=True)
    source = models.CharField(max_length=32, default="api")
    at_ms = models.BigIntegerField()
    request_id = models.BigIntegerField(null=True, blank=True)  # the approved request that made the move
    # A rollout's step on this label (the label's own version stays): {"event": "started" | "changed" |
    # "halted" | "ended", "id", "arms", "halted_reason"?}; null for a move.
    rollout = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["profile", "name", "-at_ms", "-id"]
        indexes = [models.Index(fields=["profile", "name", "-at_ms"], name="profile_label_move_history")]

    def __str__(self) -> str:
        return f"{self.profile_id}:{self.name} {self.from_version}->{self.to_version}"


class LabelRequest(models.Model):
    """A request to move a label that needs approvals (`profiles.approvals`): applied when the registry's
    `required_approvals` approvers have approved it; stale when the label moved meanwhile."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPLIED = "applied"
        REJECTED = "rejected"
        STALE = "stale"

    # indexed by label_request_open (its leading column)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="label_requests", db_index=False)
    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField(null=True, blank=True)  # where the label is to point
    rollout = models.JSONField(null=True, blank=True)  # or the rollout to start on it (arms, sticky, guard)
    from_version = models.PositiveIntegerField(null=True, blank=True)  # where it pointed when asked
    note = models.TextField(blank=True)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    by_username = models.CharField(max_length=150)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    approvals = models.JSONField(default=list, blank=True)  # [{id, username, at_ms}], in order
    created_at_ms = models.BigIntegerField()
    decided_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["profile", "name", "status"], name="label_request_open")]

    def __str__(self) -> str:
        return f"{self.profile_id}:{self.name} -> v{self.version} ({self.status})"


class ProfileSelection(TimestampedMs):
    """A user's current profile for one mount: stored so it survives logout and follows the user."""

    # indexed by profile_selection_one_per_mount (its leading column)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile_selections", db_index=False
    )
    mount = models.CharField(max_length=32)
    registry_slug = models.CharField(max_length=128)
    profile_slug = models.CharField(max_length=128)
    # What follows `@` in the ref the user chose: "" (follow), a version ("3", pinned) or a label.
    profile_at = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "mount"], name="profile_selection_one_per_mount")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.mount}: {self.registry_slug}/{self.profile_slug}"


class AuditEvent(models.Model):
    """One write to registries, profiles or labels: who, what, on which object, the structured change,
    from where. Written by `profiles.audit.audit_record` in the write's own transaction; never changed or
    deleted (no route, no admin action, and the model refuses)."""

    at_ms = models.BigIntegerField(db_index=True)
    actor_type = models.CharField(max_length=16)  # "user", "key" (an API key's owner), "system" (a file)
    actor_id = models.BigIntegerField(null=True, blank=True)  # not a foreign key: the entry outlives its user
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)  # `<object>.<verb>`: `profile.updated`, `label.moved`
    object_type = models.CharField(max_length=32)
    registry = models.CharField(max_length=128, db_index=True)
    slug = models.CharField(max_length=128, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.registry}{'/' + self.slug if self.slug else ''} by {self.actor_username}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("audit entries are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit entries are never deleted")


class Webhook(models.Model):
    """A registry's subscriber: events of its profiles and labels are POSTed to `url`, signed with
    `secret` (HMAC-SHA256; shown once, when created). `profiles.webhooks` writes and delivers."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list)
    secret = models.CharField(max_length=128)
    created_by = models.CharField(max_length=150, blank=True)
    created_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.registry_id}: {self.url}"


class WebhookDelivery(models.Model):
    """The outbox: one event for one webhook, written in the transaction of the change it reports and
    sent by the workers until a 2xx (or the attempts run out)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(unique=True)
    event = models.CharField(max_length=64)
    body = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at_ms = models.BigIntegerField(db_index=True)  # also the claim: a sender moves it ahead
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at_ms"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} -> {self.webhook_id} ({self.status})"


class ApiKey(models.Model):
    """A key for the OpenAI-compatible API (`profiles.keys`): it acts as its owner, limited to its scopes,
    until it expires or is revoked. Only a hash of the secret is stored; the secret is shown once."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)  # the secret's first characters: how lists tell keys apart
    digest = models.CharField(max_length=64, unique=True)  # sha256 of the secret, hex
    # `["*"]`, `["analyst", "support-desk@production", "inventory/analyst"]`: `profiles.keys.scope_allows`.
    scopes = models.JSONField(default=list)
    expires_at_ms = models.BigIntegerField(null=True, blank=True)
    rpm = models.PositiveIntegerField(null=True, blank=True)  # requests per minute, across every worker
    tpm = models.PositiveIntegerField(null=True, blank=True)  # tokens per minute, across every worker
    created_at_ms = models.BigIntegerField()
    rotated_at_ms = models.BigIntegerField(null=True, blank=True)
    revoked_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
