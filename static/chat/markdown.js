// A tiny, safe markdown renderer.
//
// The WHOLE input is HTML-escaped first; only then are a few constructs turned into a fixed set of
// tags we write ourselves: paragraphs, line breaks, **bold**, *italic*, `code`, fenced code blocks,
// bullet lists and [links](https://...) whose target is an http(s) URL. No raw HTML ever passes.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

const FENCE = /^\s{0,3}```\s*([\w+-]*)\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const ORDERED = /^\s{0,3}\d{1,9}[.)]\s+(.*)$/;
// Runs on escaped text: "&quot;" / "&#39;" can appear, "<" and ">" cannot. A URL never contains a
// placeholder (\u0000): otherwise a bare URL could swallow an earlier link and nest it in an href.
const LINK = /\[([^\]\n]+)\]\((https?:\/\/[^\s()\u0000]+)\)/g;
const BARE_URL = /(^|[\s(])(https?:\/\/[^\s<\u0000]+)/g;
const PLACEHOLDER = /\u0000(\d+)\u0000/g;
const HAS_PLACEHOLDER = /\u0000\d+\u0000/;

function renderInline(escaped) {
  const stash = [];
  const keep = (html) => `\u0000${stash.push(html) - 1}\u0000`;
  let text = escaped.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${code}</code>`));
  text = text.replace(LINK, (_, label, url) => keep(link(url, label)));
  text = text.replace(BARE_URL, (_, lead, candidate) => {
    // Stop at an (escaped) quote and leave trailing punctuation outside the link.
    const quote = candidate.search(/&quot;|&#39;/);
    const head = quote >= 0 ? candidate.slice(0, quote) : candidate;
    const url = head.replace(/(?:[.,;:!?)]|&amp;)+$/, "");
    if (url.length <= "https://".length) return lead + candidate;
    return lead + keep(link(url, url)) + candidate.slice(url.length);
  });
  text = text.replace(/\*\*(?=\S)([^*]*?\S)\*\*/g, "<strong>$1</strong>");
  text = text.replace(/(^|[^*\w])\*(?=\S)([^*\n]*?\S)\*(?!\*)/g, "$1<em>$2</em>");
  text = text.replace(/(^|[^\w])_(?=\S)([^_\n]*?\S)_(?!\w)/g, "$1<em>$2</em>");
  // Placeholders may nest (a link label with code): resolve until none is left.
  for (let i = 0; i < 3 && HAS_PLACEHOLDER.test(text); i += 1) {
    text = text.replace(PLACEHOLDER, (_, index) => stash[Number(index)]);
  }
  return text;
}

function link(escapedUrl, label) {
  // The URL was escaped with the rest of the text, so it is safe inside a quoted attribute.
  return `<a href="${escapedUrl}" target="_blank" rel="noopener noreferrer nofollow">${label}</a>`;
}

/** Markdown source -> an HTML string built only from escaped text and our own tags. */
export function renderMarkdown(source) {
  const lines = escapeHtml(String(source ?? "").replace(/\u0000/g, "")).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let paragraph = [];
  let list = null; // {tag, items}

  const flushParagraph = () => {
    if (paragraph.length) out.push(`<p>${paragraph.map(renderInline).join("<br>")}</p>`);
    paragraph = [];
  };
  const flushList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((item) => `<li>${renderInline(item)}</li>`).join("")}</${list.tag}>`);
    list = null;
  };

  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      flushParagraph();
      flushList();
      const code = [];
      i += 1;
      while (i < lines.length && !FENCE.test(lines[i])) {
        code.push(lines[i]);
        i += 1;
      }
      const lang = fence[1] ? ` data-lang="${fence[1]}"` : "";
      out.push(`<pre><code${lang}>${code.join("\n")}</code></pre>`);
      continue;
    }
    if (!line.trim()) {
      flushParagraph();
      flushList();
      continue;
    }
    const bullet = BULLET.exec(line);
    const ordered = bullet ? null : ORDERED.exec(line);
    if (bullet || ordered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (list && list.tag !== tag) flushList();
      if (!list) list = { tag, items: [] };
      list.items.push((bullet || ordered)[1]);
      continue;
    }
    if (list && /^\s{2,}\S/.test(line)) {
      list.items[list.items.length - 1] += ` ${line.trim()}`; // a continuation line of a list item
      continue;
    }
    flushList();
    paragraph.push(line);
  }
  flushParagraph();
  flushList();
  return out.join("");
}
