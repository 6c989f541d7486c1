// Markdown of answers: full CommonMark + GFM tables and strikethrough, safely.
//
//   1. markdown-it renders with HTML DISABLED: raw HTML in the source is text, never markup.
//   2. DOMPurify sanitises that output against an allow-list of tags and attributes; links keep only
//      http(s) and mailto targets and open in a new tab with rel="noopener noreferrer nofollow".
//   3. highlight.js colours fenced code (its output is sanitised again: spans with classes only).
// Headings move two levels down (# -> h3) so an answer never breaks the page's outline; images are
// not rendered (a model could point one at any server), their markdown stays visible as text.
// The libraries are pinned releases vendored under static/vendor/ (see its README).

import DOMPurify from "../vendor/dompurify-3.4.18/purify.es.mjs";
import hljs from "../vendor/highlightjs-11.12.0/core.min.js";
import bash from "../vendor/highlightjs-11.12.0/languages/bash.min.js";
import css from "../vendor/highlightjs-11.12.0/languages/css.min.js";
import diff from "../vendor/highlightjs-11.12.0/languages/diff.min.js";
import javascript from "../vendor/highlightjs-11.12.0/languages/javascript.min.js";
import json from "../vendor/highlightjs-11.12.0/languages/json.min.js";
import markdown from "../vendor/highlightjs-11.12.0/languages/markdown.min.js";
import plaintext from "../vendor/highlightjs-11.12.0/languages/plaintext.min.js";
import python from "../vendor/highlightjs-11.12.0/languages/python.min.js";
import shell from "../vendor/highlightjs-11.12.0/languages/shell.min.js";
import sql from "../vendor/highlightjs-11.12.0/languages/sql.min.js";
import typescript from "../vendor/highlightjs-11.12.0/languages/typescript.min.js";
import xml from "../vendor/highlightjs-11.12.0/languages/xml.min.js";
import yaml from "../vendor/highlightjs-11.12.0/languages/yaml.min.js";
import MarkdownIt from "../vendor/markdown-it-15.0.3/markdown-it.esm.min.mjs";

const LANGUAGES = { bash, css, diff, javascript, json, markdown, plaintext, python, shell, sql, typescript, xml, yaml };
for (const [name, grammar] of Object.entries(LANGUAGES)) hljs.registerLanguage(name, grammar);

export const ALLOWED_TAGS = [
  "p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "hr", "ul", "ol", "li", "a",
  "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "span",
];
const ALLOWED_ATTR = ["href", "title", "class", "start"];
const SAFE_URL = /^(?:https?:|mailto:)/i;

const md = new MarkdownIt("default", { html: false, linkify: true, breaks: true, typographer: false });
md.disable("image");
md.validateLink = (url) => SAFE_URL.test(String(url).trim());

// Headings two levels down; table cell alignment as a class (the style attribute is never allowed).
md.core.ruler.push("page_outline", (state) => {
  for (const token of state.tokens) {
    if (token.type === "heading_open" || token.type === "heading_close") {
      const level = Number(token.tag.slice(1));
      token.tag = `h${Math.min(6, level + 2)}`;
      if (token.type === "heading_open") token.attrJoin("class", `md-h${level}`);
    } else if (token.type === "th_open" || token.type === "td_open") {
      const style = token.attrGet("style");
      const align = style && /text-align:(left|right|center)/.exec(style);
      if (style) token.attrs = (token.attrs || []).filter(([name]) => name !== "style");
      if (align) token.attrJoin("class", `align-${align[1]}`);
    }
  }
});

const purifier = DOMPurify();
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName !== "A") return;
  const href = node.getAttribute("href");
  if (href && SAFE_URL.test(href.trim())) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  } else {
    node.removeAttribute("href");
  }
});

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
}

/** Markdown source -> sanitised HTML (a string built by markdown-it and filtered by DOMPurify). */
export function renderMarkdown(source) {
  const html = md.render(String(source ?? "").replace(/\u0000/g, ""));
  return purifier.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOWED_URI_REGEXP: SAFE_URL,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
  });
}

const highlighted = new Map(); // `${language}\n${code}` -> sanitised HTML (bounded)

/** The code's HTML with highlight.js classes, or null when the language is not one we carry. */
export function highlight(code, language) {
  if (!language || !hljs.getLanguage(language)) return null;
  const key = `${language}\n${code}`;
  let html = highlighted.get(key);
  if (html === undefined) {
    const raw = hljs.highlight(code, { language, ignoreIllegals: true }).value;
    html = purifier.sanitize(raw, { ALLOWED_TAGS: ["span"], ALLOWED_ATTR: ["class"] });
    if (highlighted.size > 200) highlighted.clear();
    highlighted.set(key, html);
  }
  return html;
}

/** The language a fenced block names (`language-python` from markdown-it), lower-cased, or "". */
export function codeLanguage(codeNode) {
  const match = /(?:^|\s)language-([\w+#.-]+)/.exec(codeNode.className || "");
  return match ? match[1].toLowerCase() : "";
}
