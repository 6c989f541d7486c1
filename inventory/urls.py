"""Inventory REST routes, without trailing slashes; the project mounts them under /inventory/api/."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from .views import ItemViewSet, ReportView, SaleViewSet

app_name = "inventory_api"

router = DefaultRouter(trailing_slash=False)
router.register("items", ItemViewSet, basename="item")
router.register("sales", SaleViewSet, basename="sale")

urlpatterns = [
    path("report", ReportView.as_view(), name="report"),
    *router.urls,
]
