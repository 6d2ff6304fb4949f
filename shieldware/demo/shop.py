"""The demo shop's routes: pages, cart, checkout, login, a JSON API and static assets."""

from __future__ import annotations

import html
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from shieldware.demo.catalogue import COUPONS, GOOD_CARD, PRODUCTS, USERS, Product

PAGE_SIZE = 20
SESSION_COOKIE = "shop_session"

CSS = """body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#222}header{background:#234;color:#fff;padding:1rem}
header a{color:#fff;margin-right:1rem}main{padding:1rem;max-width:60rem;margin:auto}.p{display:inline-block;width:11rem;
margin:.5rem;vertical-align:top}.price{font-weight:600}"""
JS = "document.documentElement.classList.add('js');"


def _svg(pid: int) -> str:
    hue = (pid * 47) % 360
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120"><rect width="160" height="120" '
            f'fill="hsl({hue},60%,70%)"/><text x="80" y="65" text-anchor="middle" font-size="20">#{pid}</text></svg>')


class ShopState:
    """Carts and logins per session cookie, in memory: this is a demo, not a shop."""

    def __init__(self) -> None:
        self.carts: dict[str, dict[int, int]] = {}
        self.logins: dict[str, str] = {}
        self.coupons: dict[str, str] = {}
        self.orders = 0

    def session(self, request: Request) -> tuple[str, bool]:
        sid = request.cookies.get(SESSION_COOKIE, "")
        if sid and len(sid) <= 64 and sid in self.carts:
            return sid, False
        sid = secrets.token_urlsafe(16)
        if len(self.carts) > 100_000:  # a demo must not grow without bound under a load test
            self.carts.clear()
            self.logins.clear()
            self.coupons.clear()
        self.carts[sid] = {}
        return sid, True


def _report(request: Request, event: str, **fields: Any) -> None:
    """Tell shieldware how an action ended, when the shop runs behind it."""
    shield = request.scope.get("state", {}).get("shield")
    if shield is not None:
        shield.report(event, **fields)


def _page(request: Request, state: ShopState, title: str, body: str, status: int = 200) -> Response:
    sid, new = state.session(request)
    user = state.logins.get(sid)
    if user:
        account = f'signed in as {html.escape(user)} · <a href="/logout">log out</a>'
    else:
        account = '<a href="/login">log in</a>'
    count = sum(state.carts.get(sid, {}).values())
    doc = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · Demo Shop</title>'
        '<link rel="stylesheet" href="/static/app.css"><script src="/static/app.js" defer></script></head><body>'
        '<header><a href="/">Demo Shop</a><a href="/products">Products</a><a href="/search">Search</a>'
        f'<a href="/cart">Cart ({count})</a>{account}</header>'
        f'<main><h1>{html.escape(title)}</h1>{body}</main></body></html>'
    )
    response = HTMLResponse(doc, status_code=status)
    if new:
        response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax")
    return response


def _card(product: Product) -> str:
    return (f'<div class="p"><a href="/product/{product.id}"><img src="/static/img/{product.id}.svg" alt="" '
            f'width="160" height="120"><br>{html.escape(product.name)}</a><br>'
            f'<span class="price">€{product.price}</span></div>')


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def build_shop(state: ShopState | None = None) -> Starlette:
    """The bare shop, with no protection (the benchmark's baseline and the proxy tests' upstream)."""
    state = state or ShopState()

    async def home(request: Request) -> Response:
        featured = "".join(_card(PRODUCTS[pid]) for pid in range(1, 9))
        return _page(request, state, "Welcome", f'<p><a href="/products">Browse all products</a></p>{featured}')

    async def products(request: Request) -> Response:
        page = max(1, _int(request.query_params.get("page"), 1))
        ids = range((page - 1) * PAGE_SIZE + 1, min(page * PAGE_SIZE, len(PRODUCTS)) + 1)
        cards = "".join(_card(PRODUCTS[pid]) for pid in ids)
        nav = f'<p><a href="/products?page={page + 1}">next page</a></p>' if page * PAGE_SIZE < len(PRODUCTS) else ""
        return _page(request, state, f"Products, page {page}", cards + nav)

    async def product(request: Request) -> Response:
        item = PRODUCTS.get(_int(request.path_params["pid"], -1))
        if item is None:
            return _page(request, state, "Not found", "<p>No such product.</p>", status=404)
        body = (f'<img src="/static/img/{item.id}.svg" alt="" width="160" height="120"><p>{html.escape(item.name)} '
                f'in {item.category}: <span class="price">€{item.price}</span>, {item.stock} in stock.</p>'
                f'<form method="post" action="/cart/add"><input type="hidden" name="product_id" value="{item.id}">'
                '<input name="quantity" value="1" size="2"> <button>Add to cart</button></form>')
        return _page(request, state, item.name, body)

    async def search(request: Request) -> Response:
        query = request.query_params.get("q", "")[:100]
        hits = [p for p in PRODUCTS.values() if query and query.lower() in p.name.lower()][:PAGE_SIZE]
        form = f'<form action="/search"><input name="q" value="{html.escape(query)}"> <button>Search</button></form>'
        return _page(request, state, "Search", form + "".join(_card(p) for p in hits))

    async def cart(request: Request) -> Response:
        sid, _ = state.session(request)
        lines = state.carts.get(sid, {})
        rows = "".join(f"<li>{q} &times; {html.escape(PRODUCTS[pid].name)}</li>" for pid, q in lines.items())
        coupon = state.coupons.get(sid)
        extra = f"<p>Coupon {html.escape(coupon)} applied.</p>" if coupon else ""
        body = (f"<ul>{rows or '<li>empty</li>'}</ul>{extra}<form method='post' action='/cart/coupon'>"
                "<input name='code'> <button>Apply coupon</button></form><p><a href='/checkout'>Checkout</a></p>")
        return _page(request, state, "Your cart", body)

    async def cart_add(request: Request) -> Response:
        sid, _ = state.session(request)
        form = await request.form()
        pid = _int(form.get("product_id"), -1)
        quantity = max(1, min(_int(form.get("quantity"), 1), 99))
        if pid not in PRODUCTS:
            return PlainTextResponse("no such product", status_code=404)
        lines = state.carts.setdefault(sid, {})
        lines[pid] = lines.get(pid, 0) + quantity
        _report(request, "cart_add", product=pid, quantity=quantity)
        return RedirectResponse("/cart", status_code=303)

    async def cart_remove(request: Request) -> Response:
        sid, _ = state.session(request)
        form = await request.form()
        state.carts.get(sid, {}).pop(_int(form.get("product_id"), -1), None)
        return RedirectResponse("/cart", status_code=303)

    async def cart_coupon(request: Request) -> Response:
        sid, _ = state.session(request)
        form = await request.form()
        code = str(form.get("code", ""))[:32].upper()
        if code not in COUPONS:
            _report(request, "coupon_invalid", code_length=len(code))
            return _page(request, state, "Coupon not valid", "<p>That code is not valid.</p>", status=400)
        state.coupons[sid] = code
        _report(request, "coupon_applied")
        return RedirectResponse("/cart", status_code=303)

    async def checkout(request: Request) -> Response:
        if request.method == "GET":
            body = ("<form method='post'><label>Card number <input name='card' autocomplete='cc-number'></label> "
                    "<button>Pay</button></form>")
            return _page(request, state, "Checkout", body)
        sid, _ = state.session(request)
        form = await request.form()
        card = str(form.get("card", "")).replace(" ", "")
        if card != GOOD_CARD:
            _report(request, "payment_declined")
            return _page(request, state, "Payment declined", "<p>Your card was declined.</p>", status=402)
        state.carts[sid] = {}
        state.orders += 1
        _report(request, "payment_succeeded")
        return _page(request, state, "Thank you", f"<p>Order #{state.orders} placed.</p>")

    async def login(request: Request) -> Response:
        if request.method == "GET":
            body = ("<form method='post'><label>User <input name='username' autocomplete='username'></label> "
                    "<label>Password <input name='password' type='password'></label> <button>Log in</button></form>")
            return _page(request, state, "Log in", body)
        sid, _ = state.session(request)
        form = await request.form()
        username = str(form.get("username", ""))[:64]
        if USERS.get(username) != str(form.get("password", "")):
            _report(request, "login_failed", account=username)
            return _page(request, state, "Log in failed", "<p>Wrong user name or password.</p>", status=401)
        state.logins[sid] = username
        _report(request, "login_succeeded", account=username)
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        sid, _ = state.session(request)
        state.logins.pop(sid, None)
        return RedirectResponse("/", status_code=303)

    async def register(request: Request) -> Response:
        if request.method == "GET":
            return _page(request, state, "Sign up", "<form method='post'><input name='username'> <button>Sign up"
                         "</button></form>")
        _report(request, "signup")
        return _page(request, state, "Welcome aboard", "<p>Account created.</p>")

    async def api_products(request: Request) -> Response:
        page = max(1, _int(request.query_params.get("page"), 1))
        ids = range((page - 1) * PAGE_SIZE + 1, min(page * PAGE_SIZE, len(PRODUCTS)) + 1)
        return JSONResponse({"page": page, "products": [_product_json(PRODUCTS[i]) for i in ids]})

    async def api_product(request: Request) -> Response:
        item = PRODUCTS.get(_int(request.path_params["pid"], -1))
        if item is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(_product_json(item))

    async def api_search(request: Request) -> Response:
        query = request.query_params.get("q", "")[:100].lower()
        hits = [_product_json(p) for p in PRODUCTS.values() if query and query in p.name.lower()][:PAGE_SIZE]
        return JSONResponse({"q": query, "products": hits})

    async def static_css(request: Request) -> Response:
        return Response(CSS, media_type="text/css", headers={"cache-control": "max-age=3600"})

    async def static_js(request: Request) -> Response:
        return Response(JS, media_type="application/javascript", headers={"cache-control": "max-age=3600"})

    async def static_img(request: Request) -> Response:
        return Response(_svg(_int(request.path_params["pid"], 0)), media_type="image/svg+xml",
                        headers={"cache-control": "max-age=3600"})

    async def robots(request: Request) -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /checkout\nDisallow: /cart\n")

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", home),
        Route("/products", products),
        Route("/product/{pid}", product),
        Route("/search", search),
        Route("/cart", cart),
        Route("/cart/add", cart_add, methods=["POST"]),
        Route("/cart/remove", cart_remove, methods=["POST"]),
        Route("/cart/coupon", cart_coupon, methods=["POST"]),
        Route("/checkout", checkout, methods=["GET", "POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout),
        Route("/register", register, methods=["GET", "POST"]),
        Route("/api/products", api_products),
        Route("/api/product/{pid}", api_product),
        Route("/api/search", api_search),
        Route("/static/app.css", static_css),
        Route("/static/app.js", static_js),
        Route("/static/img/{pid}.svg", static_img),
        Route("/robots.txt", robots),
        Route("/health", health),
    ]
    return Starlette(routes=routes)


def _product_json(item: Product) -> dict[str, Any]:
    return {"id": item.id, "name": item.name, "category": item.category, "price": item.price, "stock": item.stock}


def build_demo_app(policy: Any = None, store: Any = None, **options: Any) -> Any:
    """The shop behind ShieldMiddleware. `policy`/`store` as ShieldMiddleware takes them."""
    from shieldware.middleware import ShieldMiddleware

    return ShieldMiddleware(build_shop(), policy=policy, store=store, **options)
