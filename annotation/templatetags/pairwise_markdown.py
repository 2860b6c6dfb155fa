"""`markdown`: untrusted Markdown (prompts, responses, guidelines) to safe HTML.

Three layers, each enough on its own for the common attacks and together for the rest:
markdown-it-py with raw HTML disabled (so `<script>` is text), Pygments highlighting with CSS
classes only (static/css/pygments.css, no JS highlighter), and nh3 (ammonia) with an allow-list
of tags, attributes and classes. Links keep only absolute http, https and mailto targets and get
`rel="noopener nofollow noreferrer"`; images are never loaded (a remote image would tell a third
party who is rating and when), so `![alt](url)` shows as a link.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django import template
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
    )


@register.filter(name="markdown")
def markdown_filter(value: object) -> SafeString:
    """`{{ response.text|markdown }}`: untrusted Markdown rendered and sanitised."""
    if value is None:
        return mark_safe("")
    return mark_safe(render_markdown(str(value)))  # noqa: S308 - sanitised by nh3 above


@register.filter(name="response_markdown")
def response_markdown_filter(value: object) -> SafeString:
    """`{{ response.text|response_markdown }}`: like `markdown`, but an empty or whitespace-only
    response (imported as data) shows as a visible "(empty response)", never as nothing."""
    text = "" if value is None else str(value)
    if not text or text.isspace():
        return mark_safe('<p class="empty-response">(empty response)</p>')
    return markdown_filter(text)
