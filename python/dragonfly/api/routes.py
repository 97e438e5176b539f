"""The control plane's route table: method, path, who may call it, handler."""

from __future__ import annotations

from typing import NamedTuple

from dragonfly.api.auth import Access
from dragonfly.api.handlers import (
    admin,
    auth,
    billing,
    contracts,
    earnings,
    keys,
    listings,
    management_keys,
    pool,
    profiles,
    routing_admin,
)
from dragonfly.api.http import Handler


class Route(NamedTuple):
    method: str
    path: str
    access: Access
    handler: Handler


ROUTES: tuple[Route, ...] = (
    # Accounts
    Route("POST", "/api/auth/signup", Access.PUBLIC, auth.signup),
    Route("POST", "/api/auth/verify", Access.PUBLIC, auth.verify),
    Route("POST", "/api/auth/login", Access.PUBLIC, auth.login),
    Route("GET", "/api/auth/me", Access.ANY, auth.me),
    # Buyer
    Route("POST", "/api/keys", Access.BUYER, keys.create),
    Route("GET", "/api/keys", Access.BUYER, keys.list_),
    Route("PATCH", "/api/keys/:id", Access.BUYER, keys.update),
    Route("DELETE", "/api/keys/:id", Access.BUYER, keys.delete),
    Route("POST", "/api/management-keys", Access.KEY_ADMIN, management_keys.create),
    Route("GET", "/api/management-keys", Access.KEY_ADMIN, management_keys.list_),
    Route("DELETE", "/api/management-keys/:id", Access.KEY_ADMIN, management_keys.delete),
    Route("GET", "/api/routing/profiles", Access.BUYER, profiles.list_),
    Route("POST", "/api/routing/profiles", Access.BUYER, profiles.create),
    Route("GET", "/api/routing/profiles/:id", Access.BUYER, profiles.get),
    Route("PATCH", "/api/routing/profiles/:id", Access.BUYER, profiles.update),
    Route("DELETE", "/api/routing/profiles/:id", Access.BUYER, profiles.delete),
    Route("GET", "/api/usage", Access.BUYER, billing.usage_totals),
    Route("GET", "/api/usage/by-key", Access.BUYER, billing.usage_by_key),
    Route("GET", "/api/usage/daily", Access.BUYER, billing.usage_daily),
    Route("GET", "/api/billing/balance", Access.BUYER, billing.balance),
    Route("GET", "/api/billing/transactions", Access.BUYER, billing.transactions),
    # Seller
    Route("GET", "/v1/pool/providers", Access.SELLER, pool.list_providers),
    Route("POST", "/v1/pool/keys", Access.SELLER, pool.create_key),
    Route("GET", "/v1/pool/keys", Access.SELLER, pool.list_keys),
    Route("DELETE", "/v1/pool/keys/:id", Access.SELLER, pool.delete_key),
    Route("POST", "/v1/market/listings", Access.SELLER, listings.create),
    Route("GET", "/v1/market/listings", Access.SELLER, listings.list_),
    Route("GET", "/v1/market/listings/:id", Access.SELLER, listings.get),
    Route("PATCH", "/v1/market/listings/:id", Access.SELLER, listings.update),
    Route("DELETE", "/v1/market/listings/:id", Access.SELLER, listings.delete),
    Route("POST", "/v1/market/listings/:id/confirm-price", Access.SELLER, listings.confirm_price),
    Route("GET", "/v1/market/listings/:id/contracts", Access.SELLER, listings.contracts),
    Route("POST", "/v1/market/listings/:id/probe", Access.SELLER, listings.probe),
    Route("GET", "/v1/market/listings/:id/probe-runs", Access.SELLER, listings.probe_runs),
    Route("GET", "/v1/market/contracts/:id/checks", Access.SELLER, listings.checks),
    Route("POST", "/v1/market/contracts/:id/reverify", Access.SELLER, contracts.reverify),
    Route("POST", "/v1/market/contracts/:id/unsuspend", Access.SELLER, contracts.unsuspend),
    Route("GET", "/v1/market/earnings", Access.SELLER, earnings.overview),
    Route("GET", "/v1/market/earnings/summary", Access.SELLER, earnings.summary),
    Route("GET", "/v1/market/earnings/timeseries", Access.SELLER, earnings.timeseries),
    Route("GET", "/v1/market/earnings/monthly", Access.SELLER, earnings.monthly),
    Route("GET", "/v1/market/settlements", Access.SELLER, earnings.settlements),
    # Operator
    Route("POST", "/api/admin/credits", Access.OPERATOR, admin.credit),
    Route("GET", "/api/admin/routing/weights", Access.OPERATOR, routing_admin.get_weights),
    Route("PUT", "/api/admin/routing/weights", Access.OPERATOR, routing_admin.put_weights),
    Route("GET", "/api/admin/listings/:id/quality", Access.OPERATOR, routing_admin.get_quality),
    Route("PUT", "/api/admin/listings/:id/quality", Access.OPERATOR, routing_admin.put_quality),
    Route("POST", "/api/admin/listings/:id/suspend", Access.OPERATOR, admin.suspend_listing),
    Route("POST", "/api/admin/listings/:id/unsuspend", Access.OPERATOR, admin.unsuspend_listing),
    Route("GET", "/api/admin/flagged-trades", Access.OPERATOR, admin.flagged),
    Route("GET", "/api/admin/routing/activity", Access.OPERATOR, admin.activity),
)
