"""The web page's HTTP surface: what ``/`` and ``/static`` serve, their security headers, and
``/v1/me``. A small in-process app (SQLite file, random bundle) is enough: no job runs here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from brainmri.config import Settings
from brainmri.db.migrate import upgrade
from brainmri.framing import CROP_MODES
from brainmri.training.recipes import RECIPES
from brainmri_api.main import create_app
from brainmri_api.routes import web
from brainmri_api.routes.web import STATIC_DIR
from tests.conftest import make_bundle

ADMIN_KEY = "web-admin-key-0123456789"
USER_KEY = "web-user-key-0123456789"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    base = tmp_path_factory.mktemp("web-http")
    make_bundle(base / "model", img_size=64)
    database_url = f"sqlite:///{base / 'brainmri.db'}"
    upgrade(database_url)
    settings = Settings(
        data_dir=base,
        database_url=database_url,
        model_dir=base / "model",
        api_keys=f"{ADMIN_KEY}:admin,{USER_KEY}:user",
        log_format="text",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class _Tags(HTMLParser):
    """Every start tag with its attributes, to check the page's structure without a browser."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def _code(source: str) -> str:
    """JavaScript without its comments (which may well name what the code must not do)."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.DOTALL)
    return re.sub(r"^\s*//.*$", "", source, flags=re.MULTILINE)


def test_index_is_served_with_a_strict_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["img-src"] == "'self' blob: data:"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in response.headers
    assert "not a medical device" in response.text


def test_index_has_no_inline_code_and_labels_every_control(client: TestClient) -> None:
    tags = _tags(client.get("/").text)
    scripts = [attrs for tag, attrs in tags if tag == "script"]
    assert scripts and all(attrs.get("src", "").startswith("/static/") for attrs in scripts)
    inline = [
        attrs for _, attrs in tags if "style" in attrs or any(k.startswith("on") for k in attrs)
    ]
    assert not inline, f"inline style or handler attributes: {inline}"
    assert not [tag for tag, _ in tags if tag == "style"]
    labelled = {attrs["for"] for tag, attrs in tags if tag == "label" and attrs.get("for")}
    controls = [
        attrs
        for tag, attrs in tags
        if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden"
    ]
    assert controls
    for attrs in controls:
        assert attrs.get("id") in labelled, f"control without a <label>: {attrs}"
    live = [attrs for _, attrs in tags if attrs.get("aria-live") or attrs.get("role") == "alert"]
    assert len(live) >= 4
    # Everything the page links to is local.
    for _, attrs in tags:
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert not re.match(r"^(https?:)?//", value), f"external reference: {value}"


class _Options(HTMLParser):
    """The option values of each <select>, by the select's id."""

    def __init__(self) -> None:
        super().__init__()
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "select":
            self._select = values.get("id") or ""
            self.options[self._select] = []
        elif tag == "option" and self._select is not None:
            self.options[self._select].append(values.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def test_train_form_offers_exactly_what_the_api_accepts(client: TestClient) -> None:
    """The Train view's choices are written in the page; they must not drift from the API's."""
    parser = _Options()
    parser.feed(client.get("/").text)
    assert sorted(parser.options["train-recipe"]) == sorted(RECIPES)
    # "": leave it to the recipe (the request omits `crop`).
    assert parser.options["train-crop"] == ["", *CROP_MODES]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TrainRequest"]
    fields = set(schema["properties"])
    page = client.get("/static/js/train.js").text
    numbers = set(re.findall(r'\["(\w+)", "train-', page))
    assert len(numbers) > 8, "train.js no longer lists its number fields as this test reads them"
    sent = numbers | {"dataset", "recipe", "auto_promote", "crop"}
    assert sent <= fields, f"the form sends fields the API forbids: {sorted(sent - fields)}"


def test_static_modules_are_served_and_safe(client: TestClient) -> None:
    modules = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js"))
    assert "js/app.js" in modules
    for name in modules:
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["x-content-type-options"] == "nosniff"
        source = _code(response.text)
        # Text reaches the page through textContent only; nothing is parsed as HTML or code.
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{name} uses {sink}"
        assert "localStorage" not in source and "document.cookie" not in source
        assert not re.search(r"https?://", source), f"{name} references another origin"
        for imported in re.findall(r'from "\./([\w.]+)"', source):
            assert (STATIC_DIR / "js" / imported).is_file(), f"{name} imports missing {imported}"
    css = client.get("/static/styles.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@import" not in css.text and "url(" not in css.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/../routes/web.py",
        "/static/%2e%2e/routes/web.py",
        "/static/..%2F..%2Fmain.py",
        "/static/js",
    ],
)
def test_static_serves_nothing_outside_its_folder(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_static_serves_only_known_types_inside_its_folder(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "page.css").write_text("body {}")
    (folder / "notes.txt").write_text("not served")
    (tmp_path / "secret.css").write_text("outside")
    (folder / "link.css").symlink_to(tmp_path / "secret.css")
    monkeypatch.setattr(web, "STATIC_DIR", folder)
    assert client.get("/static/page.css").status_code == 200
    assert client.get("/static/notes.txt").status_code == 404  # unknown type
    assert client.get("/static/link.css").status_code == 404  # resolves outside the folder


def test_me_reports_the_keys_role(client: TestClient) -> None:
    missing = client.get("/v1/me")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthenticated"
    wrong = client.get("/v1/me", headers={"X-API-Key": "not-a-valid-key-at-all"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "invalid API key"
    admin = client.get("/v1/me", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    user = client.get("/v1/me", headers={"X-API-Key": USER_KEY}).json()
    assert admin["role"] == "admin" and user["role"] == "user"
    assert admin["key_id"] != user["key_id"] and ADMIN_KEY not in str(admin)
    assert "not a medical device" in user["disclaimer"]


def test_page_routes_stay_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/me" in paths
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_api_docs_load_every_file_from_this_server(client: TestClient) -> None:
    """A hospital network without internet must still get working docs: no CDN, no fonts."""
    response = client.get("/docs")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    urls = [
        attrs.get("src") or attrs.get("href") or ""
        for tag, attrs in _tags(response.text)
        if tag in ("script", "link") and (attrs.get("src") or attrs.get("href"))
    ]
    assert urls and all(url.startswith("/docs/assets/") for url in urls), urls
    assert "//" not in "".join(urls) and "cdn" not in response.text.lower()
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
        kind = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
        assert asset.headers["content-type"].startswith(kind[Path(url).suffix]), url


def test_the_docs_read_the_schema_from_this_server(client: TestClient) -> None:
    assert "url: '/openapi.json'" in client.get("/docs").text
    assert client.get("/redoc").status_code == 404  # off: it would call a CDN for its logo
    script = client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in script


@pytest.mark.parametrize(
    "name", ["index.html", "..%2F..%2Fpyproject.toml", "core.py", "redoc.standalone.js"]
)
def test_only_the_listed_docs_assets_are_served(client: TestClient, name: str) -> None:
    assert client.get(f"/docs/assets/{name}").status_code == 404
