"""Layout checks read from the browser's own geometry (element widths, scroll widths, line boxes), never from
screenshots: does anything stick out of the screen, and did a word get broken across two lines."""

from __future__ import annotations

from typing import Any

#: Elements wider than the page (tag#id.class and right edge), outside a container that scrolls on purpose.
_STICKING_OUT = """() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest('.table-scroll, .visually-hidden, thead'))
    .slice(0, 8).map(e => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`);
}"""

#: Words of table cells laid out on more than one line. A word is a run between spaces, hyphens and slashes (a
#: line may break there); code (URLs, IDs, thumbprints) may break anywhere and is left out, as is what is hidden.
_BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const cell of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('code, pre, .visually-hidden')) continue;
      for (const match of node.textContent.matchAll(/[^\\s\\-\\u2010-\\u2014\\/]+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken.slice(0, 10);
}"""

#: Tables wider than their own box (their content overflows sideways).
_WIDE_TABLES = """() => [...document.querySelectorAll('table')]
  .filter(t => t.getClientRects().length && !t.closest('.table-scroll') && t.scrollWidth > t.clientWidth + 1)
  .map(t => `table#${t.id}.${t.className} ${t.scrollWidth} > ${t.clientWidth}`)"""


def horizontal_overflow(page: Any) -> dict[str, Any]:
    """How far the page scrolls sideways (``scrollWidth`` beyond the viewport's width), and what sticks out."""
    width = page.evaluate("document.documentElement.clientWidth")
    return {"extra": page.evaluate("document.documentElement.scrollWidth") - width,
            "sticking_out": page.evaluate(_STICKING_OUT), "wide_tables": page.evaluate(_WIDE_TABLES)}


def broken_words(page: Any, selector: str = "td, th") -> list[str]:
    """The words of the cells matching ``selector`` that are broken across two lines (at most 10)."""
    return page.evaluate(_BROKEN_WORDS, selector)


def card_labels(page: Any, table: str) -> list[str]:
    """The labels a phone shows above the cells of ``table``'s first row (the ``::before`` content)."""
    return page.evaluate("""(selector) => [...document.querySelectorAll(selector + ' tbody tr:first-child td')]
        .map(td => getComputedStyle(td, '::before').content.replace(/^"|"$/g, ''))""", table)
