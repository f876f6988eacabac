"""Make untrusted email HTML safe to show inside the crmail UI, and turn HTML into text.

The policy is an allow-list run through nh3 (ammonia); everything not listed is gone.
On top of nh3's own URL checks, one attribute filter decides every ``href``, ``src``
and ``style`` value, so the rules live in one place:

* links: only ``http``, ``https``, ``mailto`` and ``tel``; relative links are dropped
  (they would resolve against the crmail origin).
* images: ``cid:`` is rewritten through ``cid_url``; remote images are blocked unless
  ``allow_remote_images`` (tracking pixels), keeping the URL in
  ``data-crmail-blocked-src`` for a "show images" button; ``data:`` is accepted only
  for raster images (png/gif/jpeg/webp/bmp) in ``<img src>``: an image context cannot
  run script, and SVG (which can carry script) is excluded. Everything else is dropped.
* styles: only a small list of layout/typography properties whose values contain no
  escapes, comments, ``url()``, ``expression()`` or any other function except colours.
"""

from __future__ import annotations

import html as html_lib
import re
import urllib.parse
from collections.abc import Callable
from functools import lru_cache

import nh3

__all__ = ["BLOCKED_SRC_ATTRIBUTE", "html_to_text", "sanitize_html"]

BLOCKED_SRC_ATTRIBUTE = "data-crmail-blocked-src"

_TAGS = frozenset(
    {
        "a", "abbr", "b", "big", "blockquote", "br", "caption", "center", "cite", "code",
        "col", "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
        "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot",
        "th", "thead", "tr", "tt", "u", "ul",
    }
)  # fmt: skip

# Removed together with their content: script-bearing, interactive or invisible.
_CLEAN_CONTENT_TAGS = frozenset(
    {
        "script", "style", "title", "svg", "math", "iframe", "frame", "frameset",
        "noframes", "object", "embed", "applet", "noscript", "noembed", "template",
        "xmp", "textarea", "select",
    }
)  # fmt: skip

_GENERIC_ATTRIBUTES = frozenset(
    {"align", "bgcolor", "dir", "height", "lang", "style", "title", "valign", "width"}
)
_ATTRIBUTES: dict[str, set[str]] = {
    "*": set(_GENERIC_ATTRIBUTES),
    "a": {"href"},
    "img": {"src", "alt", "border", "hspace", "vspace"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "summary"},
    "td": {"colspan", "rowspan", "nowrap"},
    "th": {"colspan", "rowspan", "nowrap", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "li": {"value"},
    "hr": {"noshade", "size"},
}

_STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style",
        "font-weight", "font-variant", "text-align", "text-decoration", "text-indent",
        "text-transform", "line-height", "letter-spacing", "word-spacing", "white-space",
        "vertical-align", "direction", "margin", "margin-top", "margin-right",
        "margin-bottom", "margin-left", "padding", "padding-top", "padding-right",
        "padding-bottom", "padding-left", "border", "border-top", "border-right",
        "border-bottom", "border-left", "border-color", "border-style", "border-width",
        "border-collapse", "border-spacing", "border-radius", "width", "height",
        "max-width", "min-width", "display", "list-style-type", "table-layout", "float",
    }
)  # fmt: skip
# Words, numbers, units, colours, quotes, and colour functions; nothing else.
_STYLE_VALUE = re.compile(r"""(?:[-\w\s.,%#'"!+/]|(?:rgba?|hsla?)\([\d\s.,%]*\))*""")

# Internal marker scheme for blocked remote images, turned into the data attribute
# after cleaning (nh3 can rewrite one attribute but not add another).
_BLOCKED_SCHEME = "crmail-blocked"
_BLOCKED_SRC = re.compile(r'(<img\b[^>]*?) src="crmail-blocked:')
_SAFE_DATA_IMAGE = re.compile(r"data:image/(?:png|gif|jpeg|jpg|webp|bmp);base64,", re.I)
# Browsers ignore ASCII whitespace and control characters inside URL schemes.
_URL_NOISE = re.compile(r"[\x00-\x20\x7f]+")
_LINK_SCHEMES = ("http://", "https://", "mailto:", "tel:")


def _compact_url(value: str) -> str:
    return _URL_NOISE.sub("", value)


def _clean_style(value: str) -> str | None:
    if "\\" in value or "/*" in value or "<" in value:
        return None  # CSS escapes and comments only serve obfuscation here
    kept = []
    for declaration in value.split(";"):
        prop, sep, prop_value = declaration.partition(":")
        prop = prop.strip().lower()
        prop_value = prop_value.strip()
        if sep and prop in _STYLE_PROPERTIES and _STYLE_VALUE.fullmatch(prop_value):
            kept.append(f"{prop}: {prop_value}")
    return "; ".join(kept) or None


def _clean_href(value: str) -> str | None:
    url = _compact_url(value)
    return url if url.lower().startswith(_LINK_SCHEMES) else None


def _clean_img_src(
    value: str, allow_remote: bool, cid_url: Callable[[str], str | None] | None
) -> str | None:
    url = _compact_url(value)
    lowered = url.lower()
    if lowered.startswith("cid:"):
        if cid_url is None:
            return None
        content_id = urllib.parse.unquote(url[4:]).strip("<>")
        if not content_id:
            return None
        try:
            return cid_url(content_id)
        except Exception:  # nh3 would swallow it via sys.unraisablehook: drop quietly
            return None
    if _SAFE_DATA_IMAGE.match(url):
        return url
    if lowered.startswith(("http://", "https://", "//")):
        return url if allow_remote else f"{_BLOCKED_SCHEME}:{url}"
    return None


def _build_cleaner(allow_remote: bool, cid_url: Callable[[str], str | None] | None) -> nh3.Cleaner:
    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "style":
            return _clean_style(value)
        if tag == "a" and attribute == "href":
            return _clean_href(value)
        if tag == "img" and attribute == "src":
            return _clean_img_src(value, allow_remote, cid_url)
        return value

    return nh3.Cleaner(
        tags=set(_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=attribute_filter,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        # "cid" must pass nh3's scheme check to reach the filter, which always rewrites it.
        url_schemes={"http", "https", "mailto", "tel", "data", "cid", _BLOCKED_SCHEME},
        filter_style_properties=set(_STYLE_PROPERTIES),
        strip_comments=True,
    )


# The common case (no cid_url) reuses one Cleaner per allow_remote value.
_shared_cleaner = lru_cache(maxsize=2)(_build_cleaner)


def sanitize_html(
    html: str,
    *,
    allow_remote_images: bool = False,
    cid_url: Callable[[str], str | None] | None = None,
) -> str:
    """Return ``html`` reduced to safe formatting (see the module docstring)."""
    if cid_url is None:
        cleaner = _shared_cleaner(allow_remote_images, None)
    else:
        # cid_url is usually a per-message closure: caching on it would only leak.
        cleaner = _build_cleaner(allow_remote_images, cid_url)
    cleaned = cleaner.clean(html)
    # nh3 escapes '>' and '"' inside attribute values, so an <img ...> tag in its output
    # cannot be faked by attribute or text content.
    return _BLOCKED_SRC.sub(rf'\1 {BLOCKED_SRC_ATTRIBUTE}="', cleaned)


# --- html_to_text --------------------------------------------------------------------

_INVISIBLE_OPEN = re.compile(
    r"<!--|<(script|style|head|title|template|svg|math|noscript|xml)\b", re.I
)
_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:br|p|div|tr|li|h[1-6]|hr|table|blockquote|pre|ul|ol|dt|dd)\b[^<>]*>", re.I
)
_CELL_TAG = re.compile(r"<\s*/?\s*t[dh]\b[^<>]*>", re.I)
_ANY_TAG = re.compile(r"<[^<>]*>")  # [^<>]: stays linear on unterminated '<'
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@lru_cache(maxsize=16)
def _closer(tag: str) -> re.Pattern[str]:
    return re.compile(rf"</\s*{tag}\s*>", re.I)


def _drop_invisible(html: str) -> str:
    """Remove comments and script/style/head/... blocks in one forward pass."""
    out = []
    pos = 0
    while True:
        match = _INVISIBLE_OPEN.search(html, pos)
        if match is None:
            out.append(html[pos:])
            break
        out.append(html[pos : match.start()])
        if match.group(1) is None:
            end = html.find("-->", match.end())
            close_end = -1 if end < 0 else end + 3
        else:
            close = _closer(match.group(1).lower()).search(html, match.end())
            close_end = -1 if close is None else close.end()
        if close_end < 0:
            break  # unterminated: the rest is invisible too
        pos = close_end
    return "".join(out)


def html_to_text(html: str) -> str:
    """Crude plain text from HTML for snippets and search. No markup survives, but
    unescaped entities may yield '<' characters: treat the result as text, not HTML."""
    text = _drop_invisible(html)
    text = _BLOCK_TAG.sub("\n", text)
    text = _CELL_TAG.sub(" ", text)
    text = _ANY_TAG.sub("", text)
    text = html_lib.unescape(text).replace("\xa0", " ")
    text = _CONTROL.sub("", text.replace("\r", ""))
    text = _SPACES.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()
