"""profiles.api.serializers.FieldsBoundOnce: a body's fields bound once per class, shared by every instance."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rest_framework import serializers

from profiles.api.serializers import FieldsBoundOnce, StrictKeysMixin


class Item(StrictKeysMixin, serializers.Serializer):
    name = serializers.CharField(max_length=5)


class Body(FieldsBoundOnce, StrictKeysMixin, serializers.Serializer):
    title = serializers.CharField(max_length=10)
    count = serializers.IntegerField(required=False, min_value=1)
    items = serializers.ListField(child=Item(), required=False)
    options = Item(required=False)


class Other(FieldsBoundOnce, StrictKeysMixin, serializers.Serializer):
    title = serializers.IntegerField()


def test_every_instance_shares_one_set_of_bound_fields_per_class():
    first, second = Body(data={}), Body(data={})

    assert first.fields is second.fields
    assert set(first.fields) == {"title", "count", "items", "options"}
    assert Other(data={}).fields["title"] is not first.fields["title"]  # a class of its own, its own fields


def test_each_body_is_validated_on_its_own():
    good = Body(data={"title": "hi", "count": 2, "items": [{"name": "a"}], "options": {"name": "b"}})
    bad = Body(data={"title": "x" * 11, "count": 0, "items": [{"name": "toolong"}], "extra": 1})

    assert good.is_valid(), good.errors
    assert not bad.is_valid()
    assert bad.errors == {"extra": ["unknown field"]}
    assert not Body(data={"title": "x" * 11, "count": 0}).is_valid()
    assert good.validated_data == {"title": "hi", "count": 2, "items": [{"name": "a"}], "options": {"name": "b"}}


def test_bodies_validated_at_once_on_many_threads_each_get_their_own_result():
    def check(i: int) -> bool:
        body = Body(data={"title": f"t{i}", "count": i + 1, "items": [{"name": str(i % 10)}]})
        ok = body.is_valid()
        refused = Body(data={"title": f"t{i}", "count": -i})
        return ok and body.validated_data["count"] == i + 1 and not refused.is_valid() and "count" in refused.errors

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, range(400)))
