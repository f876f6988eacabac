"""sanitize_html against an XSS corpus, plus formatting that must survive."""

from __future__ import annotations

import re

import pytest

from crmail.mime import html_to_text, sanitize_html

# (hostile html, regex that must NOT match the sanitized output)
XSS = [
    ("<script>alert(1)</script>hi", r"<script|alert"),
    ("<SCRIPT SRC=//evil.example/x.js></SCRIPT>", r"(?i)script|evil"),
    ("<img src=x onerror=alert(1)>", r"onerror|alert"),
    ("<body onload=alert(1)>x</body>", r"onload"),
    ('<a href="javascript:alert(1)">x</a>', r"javascript|href"),
    ('<a href="JaVaScRiPt:alert(1)">x</a>', r"(?i)javascript|href"),
    ('<a href="jav&#x09;ascript:alert(1)">x</a>', r"(?i)ascript|href"),
    (
        '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
        r"(?i)href|alert",
    ),
    ('<a href=" \x01javascript:alert(1)">x</a>', r"(?i)javascript|href"),
    ('<a href="vbscript:msgbox(1)">x</a>', r"(?i)vbscript|href"),
    ('<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>', r"data:|href"),
    ('<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">', r"data:|src="),
    ('<p style="width: expression(alert(1))">x</p>', r"expression|style"),
    ('<p style="background: url(javascript:alert(1))">x</p>', r"url\(|javascript|style"),
    ('<p style="color: e\\78pression(alert(1))">x</p>', r"xpression|style"),
    (
        '<div style="background-image: url(https://track.example/p.gif)">x</div>',
        r"track\.example|url\(",
    ),
    ('<p style="color:red;/**/behavior:url(x.htc)">x</p>', r"behavior|htc"),
    ("<svg><script>alert(1)</script></svg>", r"(?i)svg|script|alert"),
    ('<svg onload="alert(1)"><circle r="1"/></svg>', r"(?i)svg|onload|circle"),
    ('<math><mtext><a href="javascript:alert(1)">x</a></mtext></math>', r"(?i)math|javascript"),
    (
        '<form action="https://evil.example"><input name="pw"><button formaction="javascript:alert(1)">go</button></form>',
        r"(?i)<form|<input|<button|action|evil",
    ),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example">', r"(?i)meta|refresh|evil"),
    ('<base href="https://evil.example/">', r"(?i)<base|evil"),
    ('<iframe src="https://evil.example"></iframe>', r"(?i)iframe|evil"),
    (
        '<object data="https://evil.example/x.swf"></object><embed src="https://evil.example/y.swf">',
        r"(?i)object|embed|evil",
    ),
    ('<link rel="stylesheet" href="https://evil.example/x.css">', r"(?i)<link|evil"),
    (
        '<style>@import "https://evil.example/x.css"; body{background:url(https://evil.example)}</style>',
        r"(?i)style|import|evil",
    ),
    (
        '<img srcset="https://track.example/a.png 1x, https://track.example/b.png 2x">',
        r"srcset|track",
    ),
    (
        '<table background="https://track.example/bg.png"><tr><td background="https://track.example/td.png">x</td></tr></table>',
        r"background|track",
    ),
    ('<img src="https://track.example/pixel.gif" width="1" height="1">', r" src=|<img[^>]* src"),
    ('<img src="//track.example/pixel.gif">', r" src="),
    ('<img src="/api/admin/delete?id=1">', r"src=|/api/admin"),
    ('<a href="/api/admin/delete">x</a>', r"href"),
    ('<a href="https://ok.example" onclick="alert(1)">x</a>', r"onclick|alert"),
    (
        '<div id="x" class="y" data-x="1" onmouseover="alert(1)">x</div>',
        r"onmouseover|class=|id=|data-x",
    ),
    ('<img src="cid:part1@x">', r"cid:|src="),  # no cid_url given: dropped
    ("<!--<script>alert(1)</script>-->", r"script|alert|<!--"),
    ('<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>', r"onerror|alert"),
    ('<img data-crmail-blocked-src="https://evil.example/x.png">', r"evil"),
    ('<img src="crmail-blocked:javascript:alert(1)">', r"javascript|alert"),
    ("<textarea><script>alert(1)</script></textarea>", r"script|alert|textarea"),
    ("<template><img src=x onerror=alert(1)></template>", r"onerror|alert"),
]


@pytest.mark.parametrize(("hostile", "forbidden"), XSS, ids=[h[:40] for h, _ in XSS])
def test_xss_corpus(hostile: str, forbidden: str) -> None:
    clean = sanitize_html(hostile)
    assert re.search(forbidden, clean) is None, clean
    assert re.search(r"(?i)\son\w+\s*=", clean) is None, clean


def test_xss_corpus_is_large_enough() -> None:
    assert len(XSS) >= 25


def test_remote_image_is_blocked_with_marker() -> None:
    clean = sanitize_html('<img src="https://cdn.example/logo.png?a=1&b=2" alt="Logo">')
    assert (
        clean
        == '<img data-crmail-blocked-src="https://cdn.example/logo.png?a=1&amp;b=2" alt="Logo">'
    )


def test_remote_image_allowed_on_request() -> None:
    clean = sanitize_html('<img src="https://cdn.example/logo.png">', allow_remote_images=True)
    assert clean == '<img src="https://cdn.example/logo.png">'
    # even then only http(s) is loaded
    assert "src" not in sanitize_html('<img src="ftp://x/y.png">', allow_remote_images=True)


def test_cid_images_are_rewritten() -> None:
    urls = {"logo@x": "/api/attachments/42"}
    clean = sanitize_html('<img src="cid:logo@x"><img src="CID:%3Cmissing@x%3E">', cid_url=urls.get)
    assert clean == '<img src="/api/attachments/42"><img>'


def test_cid_url_errors_drop_the_image() -> None:
    def broken(cid: str) -> str | None:
        raise RuntimeError(cid)

    assert sanitize_html('<img src="cid:a@b">', cid_url=broken) == "<img>"


def test_safe_data_image_survives() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    assert sanitize_html(f'<img src="{png}">') == f'<img src="{png}">'


def test_links_get_rel_and_target() -> None:
    clean = sanitize_html(
        '<a href="https://crm.example/x?a=1">go</a> <a href="mailto:a@x.org">m</a>'
    )
    assert clean == (
        '<a href="https://crm.example/x?a=1" target="_blank" rel="noopener noreferrer nofollow">go</a> '
        '<a href="mailto:a@x.org" target="_blank" rel="noopener noreferrer nofollow">m</a>'
    )


def test_benign_formatting_survives() -> None:
    html = (
        '<div dir="ltr"><p>Hello <b>bold</b> <i>it</i> <u>u</u> <em>e</em> <strong>s</strong></p>'
        '<font color="#ff0000" face="Arial" size="3">red</font>'
        "<blockquote>quoted</blockquote><pre><code>x = 1</code></pre><h1>T</h1><h6>t</h6>"
        "<ul><li>one</li></ul><ol><li>two</li></ol><hr><br>"
        '<table border="0" cellpadding="2"><thead><tr><th colspan="2">H</th></tr></thead>'
        '<tbody><tr><td align="right" valign="top">c</td></tr></tbody></table></div>'
    )
    assert sanitize_html(html) == html


def test_safe_styles_survive_and_unsafe_ones_go() -> None:
    clean = sanitize_html(
        '<p style="color: rgb(255, 0, 0); font-size: 12px; position: fixed; top: 0">x</p>'
    )
    assert "color:rgb(255, 0, 0)" in clean.replace(": ", ":")
    assert "font-size" in clean
    assert "position" not in clean and "top" not in clean


def test_html_to_text() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<p>Hello&nbsp;<b>World</b></p><!-- hidden --><script>x()</script>"
        "<table><tr><td>a</td><td>b</td></tr></table>Line<br>Break &amp; more</body></html>"
    )
    assert html_to_text(html) == "Hello World\n\na b\n\nLine\nBreak & more"


@pytest.mark.parametrize(
    "hostile", ["<" * 200_000, "<script>" * 50_000, "<!--" * 50_000, "<a " * 100_000]
)
def test_html_to_text_stays_linear_on_unterminated_markup(hostile: str) -> None:
    html_to_text(hostile)  # quadratic regexes would take minutes here
