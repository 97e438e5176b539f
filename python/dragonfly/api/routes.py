"""The control plane's route table: method, path, who may call it, handler; and, for the OpenAPI
description (api/openapi.py), the body model the handler parses (`body=`), the query parameters it reads
(`query=`, api/params.py), its success status (`status=`) and any error status the description's rules
do not infer (`errors=`). tests/unit/test_openapi.py checks these against the handlers' code."""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel

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
    market,
    pool,
    profiles,
    reference_prices,
    routing_admin,
    session,
)
from dragonfly.api.http import Handler
from dragonfly.api.params import (
    ACTIVITY,
    BUCKET,
    CREDIT_IDEMPOTENCY,
    DAYS,
    GROUP,
    KIND,
    MARKET_WINDOW,
    MONTHS,
    PAGE,
    PAYOUT_PAGE,
    REVIEW_PAGE,
    WINDOW,
    Header,
    Query,
)
from dragonfly.api.schemas.admin import Credit, ResolveReview, Suspend, Unsuspend
from dragonfly.api.schemas.auth import Login, Signup, Verify
from dragonfly.api.schemas.keys import CreateKey, CreateManagementKey, UpdateKey
from dragonfly.api.schemas.listings import CreateListing, UpdateListing
from dragonfly.api.schemas.payouts import MarkPaid, PayoutRequest
from dragonfly.api.schemas.pool import CreatePoolKey
from dragonfly.api.schemas.profiles import CreateProfile, UpdateProfile
from dragonfly.api.schemas.reference_prices import ReferencePrice
from dragonfly.api.schemas.routing_admin import ListingQuality, StrategyWeights


class Route(NamedTuple):
    method: str
    path: str
    access: Access
    handler: Handler
    body: type[BaseModel] | None = None  # the model the handler parses with `call.json`
    query: tuple[Query, ...] = ()  # the query parameters it reads with `call.query`
    headers: tuple[Header, ...] = ()  # the optional request headers it reads
    status: int = 200  # its success status
    errors: tuple[int, ...] = ()  # error statuses beyond those api/openapi.py infers


ROUTES: tuple[Route, ...] = (
    # Accounts
    # 429: the abuse limits (services/abuse.py).
    Route("POST", "/api/auth/signup", Access.PUBLIC, auth.signup, body=Signup, status=201, errors=(429,)),
    Route("POST", "/api/auth/verify", Access.PUBLIC, auth.verify, body=Verify, errors=(429,)),
    Route("POST", "/api/auth/login", Access.PUBLIC, auth.login, body=Login, errors=(401, 429)),
    Route("GET", "/api/auth/me", Access.ANY, auth.me),
    # The browser's login and logout: cookies and a CSRF token (api/session_cookies.py).
    Route("POST", "/api/auth/session", Access.PUBLIC, session.create, body=Login, errors=(401, 403, 429)),
    Route("DELETE", "/api/auth/session", Access.PUBLIC, session.delete, status=204, errors=(403,)),
    # Buyer
    Route("POST", "/api/keys", Access.BUYER, keys.create, body=CreateKey, status=201),
    Route("GET", "/api/keys", Access.BUYER, keys.list_),
    Route("PATCH", "/api/keys/:id", Access.BUYER, keys.update, body=UpdateKey),
    Route("DELETE", "/api/keys/:id", Access.BUYER, keys.delete, status=204),
    Route(
        "POST",
        "/api/management-keys",
        Access.KEY_ADMIN,
        management_keys.create,
        body=CreateManagementKey,
        status=201,
    ),
    Route("GET", "/api/management-keys", Access.KEY_ADMIN, management_keys.list_),
    Route("DELETE", "/api/management-keys/:id", Access.KEY_ADMIN, management_keys.delete, status=204),
    Route("GET", "/api/routing/profiles", Access.BUYER, profiles.list_),
    Route("POST", "/api/routing/profiles", Access.BUYER, profiles.create, body=CreateProfile, status=201),
    Route("GET", "/api/routing/profiles/:id", Access.BUYER, profiles.get),
    Route("PATCH", "/api/routing/profiles/:id", Access.BUYER, profiles.update, body=UpdateProfile),
    Route("DELETE", "/api/routing/profiles/:id", Access.BUYER, profiles.delete, status=204),
    Route("GET", "/api/usage", Access.BUYER, billing.usage_totals, query=WINDOW),
    Route("GET", "/api/usage/by-key", Access.BUYER, billing.usage_by_key, query=(*WINDOW, GROUP)),
    Route("GET", "/api/usage/by-group", Access.BUYER, billing.usage_by_group, query=WINDOW),
    Route("GET", "/api/usage/daily", Access.BUYER, billing.usage_daily, query=DAYS),
    Route("GET", "/api/billing/balance", Access.BUYER, billing.balance),
    Route("GET", "/api/billing/transactions", Access.BUYER, billing.transactions, query=PAGE),
    # Seller
    Route("GET", "/v1/pool/providers", Access.SELLER, pool.list_providers),
    Route("POST", "/v1/pool/keys", Access.SELLER, pool.create_key, body=CreatePoolKey, status=201),
    Route("GET", "/v1/pool/keys", Access.SELLER, pool.list_keys),
    Route("DELETE", "/v1/pool/keys/:id", Access.SELLER, pool.delete_key, status=204),
    Route("POST", "/v1/market/listings", Access.SELLER, listings.create, body=CreateListing, status=201),
    Route("GET", "/v1/market/listings", Access.SELLER, listings.list_),
    Route("GET", "/v1/market/listings/:id", Access.SELLER, listings.get),
    Route("PATCH", "/v1/market/listings/:id", Access.SELLER, listings.update, body=UpdateListing),
    Route("DELETE", "/v1/market/listings/:id", Access.SELLER, listings.delete, status=204),
    Route("POST", "/v1/market/listings/:id/confirm-price", Access.SELLER, listings.confirm_price),
    Route("GET", "/v1/market/listings/:id/contracts", Access.SELLER, listings.contracts),
    Route("POST", "/v1/market/listings/:id/probe", Access.SELLER, listings.probe),
    Route("GET", "/v1/market/listings/:id/probe-runs", Access.SELLER, listings.probe_runs),
    Route("GET", "/v1/market/listings/:id/price-history", Access.SELLER, listings.price_history),
    Route("GET", "/v1/market/contracts/:id/checks", Access.SELLER, listings.checks),
    Route("POST", "/v1/market/contracts/:id/reverify", Access.SELLER, contracts.reverify),
    Route("POST", "/v1/market/contracts/:id/unsuspend", Access.SELLER, contracts.unsuspend),
    Route("GET", "/v1/market/earnings", Access.SELLER, earnings.overview),
    Route("GET", "/v1/market/earnings/summary", Access.SELLER, earnings.summary, query=WINDOW),
    Route(
        "GET", "/v1/market/earnings/timeseries", Access.SELLER, earnings.timeseries, query=(BUCKET, *WINDOW)
    ),
    Route("GET", "/v1/market/earnings/monthly", Access.SELLER, earnings.monthly, query=MONTHS),
    Route("GET", "/v1/market/settlements", Access.SELLER, earnings.settlements, query=PAGE),
    Route("GET", "/v1/market/health", Access.SELLER, market.health, query=MARKET_WINDOW),
    Route("GET", "/v1/market/trade-reviews", Access.SELLER, market.trade_reviews, query=REVIEW_PAGE),
    Route("POST", "/v1/market/payouts", Access.SELLER, market.request_payout, body=PayoutRequest, status=201),
    Route("GET", "/v1/market/payouts", Access.SELLER, market.list_payouts, query=PAYOUT_PAGE),
    # Operator
    Route(
        "POST",
        "/api/admin/credits",
        Access.OPERATOR,
        admin.credit,
        body=Credit,
        status=201,
        headers=(CREDIT_IDEMPOTENCY,),
    ),
    Route("GET", "/api/admin/routing/weights", Access.OPERATOR, routing_admin.get_weights),
    Route(
        "PUT", "/api/admin/routing/weights", Access.OPERATOR, routing_admin.put_weights, body=StrategyWeights
    ),
    Route("GET", "/api/admin/listings/:id/quality", Access.OPERATOR, routing_admin.get_quality),
    Route(
        "PUT",
        "/api/admin/listings/:id/quality",
        Access.OPERATOR,
        routing_admin.put_quality,
        body=ListingQuality,
    ),
    Route("POST", "/api/admin/listings/:id/suspend", Access.OPERATOR, admin.suspend_listing, body=Suspend),
    Route(
        "POST", "/api/admin/listings/:id/unsuspend", Access.OPERATOR, admin.unsuspend_listing, body=Unsuspend
    ),
    Route("GET", "/api/admin/flagged-trades", Access.OPERATOR, admin.flagged, query=REVIEW_PAGE),
    Route(
        "POST",
        "/api/admin/flagged-trades/:id/resolve",
        Access.OPERATOR,
        admin.resolve_review,
        body=ResolveReview,
    ),
    Route("GET", "/api/admin/payouts", Access.OPERATOR, admin.payouts_list, query=PAYOUT_PAGE),
    Route("POST", "/api/admin/payouts/:id/mark-paid", Access.OPERATOR, admin.mark_payout_paid, body=MarkPaid),
    Route("GET", "/api/admin/routing/activity", Access.OPERATOR, admin.activity, query=ACTIVITY),
    # The model is the rest of the path: market model names hold slashes (`deepseek/deepseek-chat`).
    Route("GET", "/api/admin/reference-prices", Access.OPERATOR, reference_prices.list_),
    Route("GET", "/api/admin/reference-prices/*model", Access.OPERATOR, reference_prices.get, query=KIND),
    Route(
        "PUT",
        "/api/admin/reference-prices/*model",
        Access.OPERATOR,
        reference_prices.put,
        body=ReferencePrice,
        query=KIND,
    ),
    Route(
        "DELETE", "/api/admin/reference-prices/*model", Access.OPERATOR, reference_prices.delete, query=KIND
    ),
)
