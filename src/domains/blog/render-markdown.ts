// Markdown (written by a model or extracted from a page, so untrusted) to HTML that is safe to
// serve: raw HTML is escaped, never passed through; links only to http, https and mailto, each
// marked nofollow/ugc; images are never loaded (rendered as a link to the image instead, so a
// post cannot track its readers or hotlink); the page's h1 is the title, so body headings start
// at h2. markdown-it loads with the first post rendered, not at start.
import type { MarkdownIt } from 'markdown-it';
import { lazyRequire } from '../../lazy-module.ts';

const markdownIt = lazyRequire<typeof import('markdown-it').default>('markdown-it');

const ALLOWED_PROTOCOLS = new Set(['http:', 'https:', 'mailto:']);
export const LINK_REL = 'nofollow noopener ugc';

/** True for absolute http(s) and mailto URLs only; control characters and whitespace tricks fail. */
export function isSafeLinkUrl(url: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f\s]/.test(url)) return false;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (!ALLOWED_PROTOCOLS.has(parsed.protocol)) return false;
  return parsed.protocol === 'mailto:' || parsed.hostname !== '';
}

function createRenderer(): MarkdownIt {
  const md = markdownIt()({ html: false, linkify: true, typographer: false, breaks: false });
  const defaultValidate = md.validateLink.bind(md);
  // markdown-it decodes entities (javascript&colon;…) before this check and refuses javascript:,
  // vbscript:, file: and data: itself; on top of that, only absolute allowed protocols pass.
  md.validateLink = (url) => defaultValidate(url) && isSafeLinkUrl(url);

  md.renderer.rules.link_open = (tokens, idx, options, _env, self) => {
    const token = tokens[idx]!;
    token.attrSet('rel', LINK_REL);
    return self.renderToken(tokens, idx, options);
  };

  // An image becomes a link to it, labelled with its alt text: no remote request on page load.
  md.renderer.rules.image = (tokens, idx) => {
    const token = tokens[idx]!;
    const src = String(token.attrGet('src') ?? '');
    const alt = token.children ? md.renderer.renderInlineAsText(token.children, md.options, {}) : token.content;
    const label = md.utils.escapeHtml(`Image: ${alt || 'untitled'}`);
    if (!isSafeLinkUrl(src)) return label;
    return `<a href="${md.utils.escapeHtml(src)}" rel="${LINK_REL}">${label}</a>`;
  };

  md.core.ruler.push('demote_h1', (state) => {
    for (const token of state.tokens) {
      if ((token.type === 'heading_open' || token.type === 'heading_close') && token.tag === 'h1') token.tag = 'h2';
    }
  });
  return md;
}

let renderer: MarkdownIt | undefined;

export function renderMarkdown(md: string): string {
  renderer ??= createRenderer();
  return renderer.render(md);
}
