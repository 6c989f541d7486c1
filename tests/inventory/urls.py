"""Test-only URL root: the inventory API where the project mounts it, plus the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("inventory/api/", include("inventory.urls")),
]
