"""Conversations, turns (each with the exact runtime that produced it) and their numbered events."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from profiles.timestamps import TimestampedMs


class Conversation(TimestampedMs):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # indexed by chat_conv_owner_mount_created (its leading column)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations", db_index=False
    )
    mount = models.CharField(max_length=32)
    title = models.CharField(max_length=200, blank=True)
    # The conversation's own profile selection; blank = follow the user's current profile.
    selected_registry = models.CharField(max_length=128, blank=True)
    selected_profile = models.CharField(max_length=128, blank=True)
    # What follows `@` in the selected ref: "" (follow the serving label or latest), "3" (pinned) or a label.
    selected_at = models.CharField(max_length=64, blank=True)
    # What is selected now. Only turn rows answer "which runtime produced this answer?".
    current_runtime_key = models.CharField(max_length=128, blank=True)
    current_fingerprint = models.CharField(max_length=80, blank=True)
    current_profile_version = models.PositiveIntegerField(null=True, blank=True)
    # The rollout arm it runs on, kept for its life while that rollout is active (`profiles.rollouts`).
    rollout_id = models.BigIntegerField(null=True, blank=True)
    rollout_version = models.PositiveIntegerField(null=True, blank=True)
    # At least the highest seq handed out (chat.sequencer reserves numbers here in blocks).
    last_seq = models.BigIntegerField(default=0)
    # The turn running now: claimed with a conditional UPDATE so only one runs, on any worker.
    active_turn = models.ForeignKey("Turn", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Kept by the services that add a turn, claim one or release the conversation, in the same statement:
    # a submission reads them with its row lock and a finish with its release, where the row is current on
    # every backend (a PostgreSQL statement that waited for the lock reads other tables as of its start).
    last_turn_seq = models.PositiveIntegerField(default=0)  # its newest turn's seq (0: none yet)
    queued_turns = models.PositiveIntegerField(default=0)  # its turns waiting for a claim
    # Archived: kept, out of the default list (`?archived=true` lists them). Null = not archived.
    archived_at_ms = models.BigIntegerField(null=True, blank=True)
    # Why it exists when no person started it: "evaluation" (a case of an evaluation run, in no list).
    purpose = models.CharField(max_length=16, blank=True, default="")

    class Meta:
        ordering = ["-created_at_ms"]
        indexes = [models.Index(fields=["owner", "mount", "-created_at_ms"], name="chat_conv_owner_mount_created")]

    def __str__(self) -> str:
        return f"{self.title or self.pk} ({self.mount})"


class Turn(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED)
    WAITING = (Status.QUEUED, Status.RUNNING)  # queued, or ahead of the queue

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # indexed by turn_unique_seq (its leading column)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns", db_index=False)
    seq = models.PositiveIntegerField()
    idempotency_key = models.CharField(max_length=128, blank=True)
    prompt = models.TextField()
    request_overrides = models.JSONField(default=dict, blank=True)
    text = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # The runtime the turn ran on (written before its first delta).
    registry = models.CharField(max_length=128, blank=True)
    profile_slug = models.CharField(max_length=128, blank=True)
    profile_version = models.PositiveIntegerField(null=True, blank=True)
    profile_ref = models.CharField(max_length=200, blank=True)  # the selection as given: slug, slug@3, slug@label
    runtime_key = models.CharField(max_length=128, blank=True)
    fingerprint = models.CharField(max_length=80, blank=True)
    engine = models.JSONField(default=dict, blank=True)
    overrides_applied = models.JSONField(default=dict, blank=True)
    middlewares = models.JSONField(default=list, blank=True)
    tools = models.JSONField(default=list, blank=True)
    # The rest of the runtime record: {system_prompt, engine_settings, middlewares: [{name, id, config}]}.
    runtime_config = models.JSONField(default=dict, blank=True)
    # The API key the gateway request that made it was authenticated with (its tokens count against the
    # key's `tpm`: `chat.limits`).
    api_key_id = models.BigIntegerField(null=True, blank=True)
    # The cost it reserved against the budgets that applied when it was submitted (`chat.billing.budgets`):
    # counted while it waits or runs, replaced by its `usage.cost_usd` once it has finished.
    reserved_usd = models.FloatField(null=True, blank=True)
    # A gateway client's own labels of the request (the Responses API's `metadata`), given back as sent.
    metadata = models.JSONField(default=dict, blank=True)
    # The rollout arm that served it ({id, label, version, weight}), and its id for per-arm stats.
    rollout = models.JSONField(null=True, blank=True)
    rollout_id = models.BigIntegerField(null=True, blank=True)
    # The turn this one replaces (regenerate, retry, edit-and-resend of the conversation's last turn).
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by")
    # What happened.
    tool_calls = models.JSONField(default=list, blank=True)
    artifacts = models.JSONField(default=list, blank=True)
    suggestions = models.JSONField(default=list, blank=True)
    # The `middleware.event` frames of the turn ({middleware, id, event, detail}), shown again on reload.
    middleware_events = models.JSONField(default=list, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    error = models.JSONField(null=True, blank=True)
    created_at_ms = models.BigIntegerField()
    started_at_ms = models.BigIntegerField(null=True, blank=True)
    finished_at_ms = models.BigIntegerField(null=True, blank=True)
    worker = models.CharField(max_length=128, blank=True)
    # The running turn's lease: its worker renews it on a timer; past it, any worker interrupts the turn.
    lease_until_ms = models.BigIntegerField(null=True, blank=True)
    # Not a column: the reader's own rating of the turn, attached by the reads that show it
    # (`chat.selectors.with_feedback`).
    caller_feedback: TurnFeedback | None = None

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="turn_unique_seq"),
            models.UniqueConstraint(
                fields=["conversation", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="turn_unique_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "lease_until_ms"], name="chat_turn_status_lease"),
            # A conversation's waiting turns (each submission counts them, each finish looks for the next):
            # found without reading the conversation's other turns, however many it has.
            models.Index(fields=["conversation", "status"], name="chat_turn_conversation_status"),
            # Per-version stats of a profile read its turns by this prefix.
            models.Index(fields=["registry", "profile_slug", "profile_version"], name="chat_turn_profile_version"),
            # Per-arm stats of a rollout, and its guard when one of its turns finishes.
            models.Index(fields=["rollout_id", "profile_version"], name="chat_turn_rollout_arm"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq} {self.status}"


class TurnChunk(models.Model):
    """A piece of a running turn's text, stored by a checkpoint: checkpoints append what is new since the
    last one (written bytes stay linear in the answer), and the turn's end writes `Turn.text` whole and
    deletes its chunks. A running turn's text so far is `Turn.text` followed by its chunks by `start`.

    A chunk also renews its turn's lease (`lease_until_ms`): a checkpoint that stores text makes one write
    per turn, not two. A running turn's lease is the later of its row's and its newest chunk's."""

    # indexed by turn_chunk_unique_start (its leading column)
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="chunks", db_index=False)
    start = models.PositiveIntegerField()  # where the piece begins in the text (characters)
    text = models.TextField()
    lease_until_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["turn", "start"]
        constraints = [models.UniqueConstraint(fields=["turn", "start"], name="turn_chunk_unique_start")]

    def __str__(self) -> str:
        return f"{self.turn_id}@{self.start}"


class ConversationEvent(models.Model):
    """The stored frames of a conversation, by seq, for replay after a reconnect. `llm.delta` frames
    are not stored (each message's `llm.final` holds its text; a one-message answer's, and a turn's
    terminal frame, leave it to the turn's row: `chat.frames.for_storage`), so storage grows linearly."""

    # indexed by event_unique_seq (its leading column)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=40)
    turn = models.ForeignKey(Turn, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    frame = models.JSONField()

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [models.UniqueConstraint(fields=["conversation", "seq"], name="event_unique_seq")]

    def __str__(self) -> str:
        return f"{self.conversation_id}@{self.seq} {self.type}"


class TurnFeedback(TimestampedMs):
    """A user's rating of one answer (`up` or `down`, with an optional comment): one per user and turn,
    replaced by the next. Per-version stats count them through the turn's runtime record."""

    class Rating(models.TextChoices):
        UP = "up"
        DOWN = "down"

    # indexed by turn_feedback_unique_user (its leading column)
    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="feedback", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="turn_feedback")
    rating = models.CharField(max_length=8, choices=Rating.choices)
    comment = models.TextField(blank=True)

    class Meta:
        ordering = ["turn", "user"]
        constraints = [models.UniqueConstraint(fields=["turn", "user"], name="turn_feedback_unique_user")]

    def __str__(self) -> str:
        return f"{self.turn_id} {self.rating} by {self.user_id}"


class KeyRateHit(models.Model):
    """What counts against an API key's per-minute limits when there is no Redis (`chat.limits`): one row
    per admitted request (`tokens` 0) and one per finished turn's tokens; rows older than the window go."""

    key_id = models.BigIntegerField()
    at_ms = models.BigIntegerField()
    tokens = models.PositiveIntegerField(default=0)  # 0: a request

    class Meta:
        indexes = [models.Index(fields=["key_id", "at_ms"], name="chat_key_rate_window")]

    def __str__(self) -> str:
        return f"key {self.key_id} @{self.at_ms} ({self.tokens or 'request'})"


class Price(models.Model):
    """What an engine's model costs from `effective_from_ms` on (`chat.billing.prices`): every price set is
    a new row, so a turn's cost is that of the price in force when it started."""

    api_type = models.CharField(max_length=32)  # the engine: openai, anthropic, offline
    model = models.CharField(max_length=200)
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6)
    effective_from_ms = models.BigIntegerField()
    created_at_ms = models.BigIntegerField()
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["api_type", "model", "-effective_from_ms"]
        indexes = [models.Index(fields=["api_type", "model", "-effective_from_ms"], name="chat_price_in_force")]

    def __str__(self) -> str:
        return f"{self.api_type}/{self.model} from {self.effective_from_ms}"


class Budget(models.Model):
    """A spending cap on a scope (`chat.billing.budgets`): the turns of a user, of a group's members, on a
    profile or with an API key, per UTC day, month or in total."""

    class Scope(models.TextChoices):
        USER = "user"
        GROUP = "group"
        PROFILE = "profile"
        KEY = "key"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"
        TOTAL = "total"

    scope_type = models.CharField(max_length=16, choices=Scope.choices)
    # The user's id, the group's name, `registry/slug`, the key's id.
    scope_id = models.CharField(max_length=300)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=6)
    period = models.CharField(max_length=8, choices=Period.choices)
    created_at_ms = models.BigIntegerField()
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["scope_type", "scope_id", "period"]
        constraints = [
            models.UniqueConstraint(fields=["scope_type", "scope_id", "period"], name="budget_unique_scope_period")
        ]

    def __str__(self) -> str:
        return f"{self.scope_type} {self.scope_id}: {self.amount_usd} USD per {self.period}"


class McpServer(TimestampedMs):
    """An MCP server whose tools profiles may allow as `mcp:<slug>/<tool>` (`chat.mcp`). Secrets are never
    stored: `headers_from_env` names, for each header, the environment variable that holds its value."""

    slug = models.SlugField(max_length=64, unique=True)
    url = models.URLField(max_length=500, help_text="its streamable HTTP endpoint, e.g. https://mcp.example.com/mcp")
    headers_from_env = models.JSONField(default=dict, blank=True)  # {"Authorization": "ACME_MCP_TOKEN"}
    # Names of the groups whose members may call its tools (checked for the user whose turn it is, at call
    # time, with the profiles' rule: `profiles.access.in_visible_groups`); none: everyone.
    visible_to_groups = models.JSONField(default=list, blank=True)
    timeout_seconds = models.FloatField(default=10.0)
    # Its tools as last fetched: [{name, description, input_schema, schema_hash}].
    tools = models.JSONField(default=list, blank=True)
    tools_fetched_at_ms = models.BigIntegerField(null=True, blank=True)
    # What went wrong at the last fetch ("" when it went well), and the tools it left out.
    tools_error = models.TextField(blank=True)

    class Meta:
        ordering = ["slug"]
        verbose_name = "MCP server"

    def __str__(self) -> str:
        return self.slug


class Dataset(TimestampedMs):
    """Cases to evaluate profile versions on (`chat.evaluations`): `[{input, expect?, judge?, reference?}]`."""

    slug = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    cases = models.JSONField(default=list, blank=True)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class EvaluationRun(models.Model):
    """A dataset run against one profile version, keyed by the fingerprint of the runtime it measured.
    Each case is a real turn of a conversation of its own (`Conversation.purpose` "evaluation")."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"

    dataset = models.ForeignKey(Dataset, null=True, on_delete=models.SET_NULL, related_name="runs")
    dataset_slug = models.CharField(max_length=64)
    mount = models.CharField(max_length=32)
    registry = models.CharField(max_length=128)
    profile = models.CharField(max_length=128)
    version = models.PositiveIntegerField()
    fingerprint = models.CharField(max_length=80)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    cases = models.JSONField(default=list)  # the dataset's cases when the run started
    results = models.JSONField(default=list)  # one per case, null until it is scored
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at_ms = models.BigIntegerField()
    started_at_ms = models.BigIntegerField(null=True, blank=True)
    finished_at_ms = models.BigIntegerField(null=True, blank=True)
    # The worker running it holds a lease it renews; an expired lease lets another worker resume it.
    worker = models.CharField(max_length=64, blank=True)
    lease_until_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at_ms"]
        indexes = [
            models.Index(fields=["registry", "profile", "fingerprint"], name="chat_evalrun_fingerprint"),
            models.Index(fields=["status", "lease_until_ms"], name="chat_evalrun_due"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk}: {self.dataset_slug} on {self.registry}/{self.profile}@{self.version}"

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.done if self.done else None


class LabelGate(models.Model):
    """Moving `label` of a profile (or rolling it out) needs a completed run of `dataset` on the target
    version's fingerprint with a pass rate of at least `min_pass_rate`."""

    registry = models.CharField(max_length=128)
    profile = models.CharField(max_length=128)
    label = models.CharField(max_length=64)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="gates")
    min_pass_rate = models.FloatField()
    created_by = models.CharField(max_length=150, blank=True)
    updated_at_ms = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registry", "profile", "label"], name="chat_labelgate_one_per_label")
        ]

    def __str__(self) -> str:
        return f"{self.registry}/{self.profile}@{self.label} needs {self.dataset_id} >= {self.min_pass_rate}"
