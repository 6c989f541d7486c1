"""What profiles may contain (middlewares, tools, extensions, step settings), as the definitions publish it;
and a version's summary."""

from __future__ import annotations

from rest_framework import serializers

from profiles.models import ProfileRevision


class MiddlewareSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    display_name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    schema = serializers.DictField(help_text="JSON Schema of the middleware's `config`")


class ToolSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    parameters = serializers.DictField(help_text="JSON Schema of the tool's input")
    writes = serializers.BooleanField()


class ExtensionSchemaSerializer(serializers.Serializer):
    key = serializers.CharField()
    schema = serializers.DictField(help_text="JSON Schema of the extension's value")


class StepSettingFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    default = serializers.JSONField(allow_null=True)
    description = serializers.CharField(allow_blank=True)
    schema = serializers.DictField()
    secret = serializers.BooleanField()


class StepSettingSectionSerializer(serializers.Serializer):
    name = serializers.CharField()
    fields = StepSettingFieldSerializer(many=True)  # type: ignore[assignment]  # a field: DRF pops declared fields off the class


class StepSettingsSchemaSerializer(serializers.Serializer):
    sections = StepSettingSectionSerializer(many=True)


class RevisionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ProfileRevision
        fields = ["version", "updated_at_ms", "updated_by", "source", "change"]
