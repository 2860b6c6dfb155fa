"""`markdown`: untrusted Markdown (prompts, responses, guidelines) to safe HTML.

Three layers, each enough on its own for the common attacks and together for the rest:
markdown-it-py with raw HTML disabled (so `<script>` is text), Pygments highlighting with CSS
classes only (static/css/pygments.css, no JS highlighter), and nh3 (ammonia) with an allow-list
of tags, attributes and classes. Links keep only absolute http, https and mailto targets and get
`rel="noopener nofollow noreferrer"`; images are never loaded (a remote image would tell a third
party who is rating and when), so `![alt](url)` shows as a link.

Rendering costs some 6 to 21 microseconds a character (pure Python; see
benchmarks/markdown_render.py), so it has a budget: a text over settings.MARKDOWN_RENDER_MAX_CHARS
is never parsed, but shown escaped in a plain panel with a note saying why. A text under it is
rendered once per web process: the safe HTML is kept in the "markdown" cache under a hash of the
text and of RENDERER_VERSION (bump it whenever the output may change, e.g. the allow-list, so
that nothing rendered by older rules is served).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import nh3
from django import template
from django.conf import settings
from django.core.cache import caches
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

register = template.Library()

# Highlighting is linear but not cheap; past this a code block is shown plain.
HIGHLIGHT_MAX_CHARS = 100_000
RENDERER_VERSION = "1"

_TAGS = {
    "p", "br", "hr", "blockquote", "pre", "code", "span", "em", "strong", "del", "a",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
# Table alignment (style="text-align:...") is dropped: the CSP ignores inline styles anyway.
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
_CLASSES = {
    "pre": {"highlight"},
    "span": {name for name in STANDARD_TYPES.values() if name},
}
_SCHEMES = ("http://", "https://", "mailto:")
_FORMATTER = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs: str) -> str:
    """A fenced block with a known language, as Pygments spans; "" lets markdown-it escape it."""
    if not lang or len(code) > HIGHLIGHT_MAX_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(lang.split()[0])
    except ClassNotFound:
        return ""
    return f'<pre class="highlight"><code>{highlight(code, lexer, _FORMATTER)}</code></pre>\n'


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        # Relative and fragment links would point into this app; only absolute links survive.
        return value if value.lower().startswith(_SCHEMES) else None
    return value


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    parser.enable(["table", "strikethrough"])
    parser.disable("image")
    return parser


def render_markdown(text: str) -> str:
    """Safe HTML for untrusted Markdown `text`."""
    rendered = _parser().render(text)
    return nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        attribute_filter=_attribute_filter,
        link_rel="noopener nofollow noreferrer",
        url_schemes={"http", "https", "mailto"},
        strip_comments=True,
        # A code block scrolls inside a bounded box: keyboard users must be able to focus it
        # to scroll it (axe's scrollable-region-focusable).
        set_tag_attribute_values={"pre": {"tabindex": "0"}},
    )


def _plain_panel(text: str) -> SafeString:
    """The text as typed, escaped, in a panel that scrolls and that the keyboard can reach."""
    return format_html(
        '<p class="hint render-note">This text is shown as plain text: at {} characters it is '
        "over the {} that are formatted as Markdown.</p>"
        '<pre class="plain-text" tabindex="0" role="region" aria-label="{}">{}</pre>',
        f"{len(text):,}",
        f"{settings.MARKDOWN_RENDER_MAX_CHARS:,}",
        "Plain text, not formatted",
        text,
    )


def markdown_html(text: str) -> SafeString:
    """Safe HTML for untrusted Markdown `text`, within the render budget (see the module)."""
    if len(text) > settings.MARKDOWN_RENDER_MAX_CHARS:
        return _plain_panel(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    key = f"markdown:{RENDERER_VERSION}:{digest}"
    cache = caches["markdown"]
    html = cache.get(key)
    if html is None:
        html = render_markdown(text)
        cache.set(key, html)
    return mark_safe(html)  # noqa: S308 - sanitised by nh3 in render_markdown


@register.filter(name="markdown")
def markdown_filter(value: object) -> SafeString:
    """`{{ response.text|markdown }}`: untrusted Markdown rendered and sanitised."""
    if value is None:
        return mark_safe("")
    return markdown_html(str(value))


@register.filter(name="response_markdown")
def response_markdown_filter(value: object) -> SafeString:
    """`{{ response.text|response_markdown }}`: like `markdown`, but an empty or whitespace-only
    response (imported as data) shows as a visible "(empty response)", never as nothing."""
    text = "" if value is None else str(value)
    if not text or text.isspace():
        return mark_safe('<p class="empty-response">(empty response)</p>')
    return markdown_filter(text)
