// Charts for the dashboard, drawn on the server as inline SVG (the page's CSP allows no script):
// stacked bars over time and grouped horizontal bars by name. Every label goes through the
// escaping html tag; each chart has a <title> and <desc>, and each bar a <title> with its figure.
// A chart's viewBox is as wide, in user units, as the CSS pixels the page gives it (CHART_WIDTH),
// so its 12-unit text reads at about 12 px instead of being scaled down into a narrow panel.
import { html, type SafeHtml } from './html.ts';
import { formatNumber } from './view.ts';

export interface Series {
  key: string;
  label: string;
  /**
   * The fill when no stylesheet applies; the page's stylesheet overrides it by the class
   * `s-<key>` with a colour of its own for light and for dark mode (layout.ts).
   */
  color: string;
}

export const OUTCOME_SERIES: Series[] = [
  { key: 'succeeded', label: 'succeeded', color: '#1e8e3e' },
  { key: 'failed', label: 'failed (retried)', color: '#e37400' },
  { key: 'dead', label: 'dead', color: '#d93025' },
];

/** ViewBox widths for the page's two chart slots at 1280 px: the panel's full width, or half of it. */
export const CHART_WIDTH = { full: 1200, half: 580 } as const;

/** About how wide a character of the charts' 12-unit text is, for placing legend items. */
const CHAR_W = 6.4;

/** A round axis maximum at or above `max` (1, 2, 2.5 or 5 times a power of ten). */
export function niceCeiling(max: number): number {
  if (!(max > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(max));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= max) return step * power;
  return 10 * power;
}

function legend(series: Series[], x: number, y: number): SafeHtml[] {
  let offset = x;
  return series.map((s) => {
    const item = html`<rect x="${offset}" y="${y - 10}" width="11" height="11" rx="2" class="s-${s.key}" fill="${s.color}"/><text x="${offset + 16}" y="${y}">${s.label}</text>`;
    offset += 28 + s.label.length * CHAR_W;
    return item;
  });
}

function frame(id: string, title: string, description: string, width: number, height: number, body: SafeHtml[]) {
  return html`<svg class="chart" id="${id}" viewBox="0 0 ${width} ${height}" role="img" aria-labelledby="${id}-title ${id}-desc" xmlns="http://www.w3.org/2000/svg"><title id="${id}-title">${title}</title><desc id="${id}-desc">${description}</desc>${body}</svg>`;
}

export interface StackedBarsInput {
  id: string;
  title: string;
  description: string;
  series: Series[];
  /** In time order; one bar each. */
  buckets: { label: string; values: Record<string, number> }[];
  /** Label every n-th bucket on the x axis. */
  labelEvery: number;
  /** The viewBox width: the CSS pixels the chart gets (CHART_WIDTH). */
  width?: number;
}

/** Stacked vertical bars, one per bucket (e.g. runs per minute by outcome). */
export function stackedBars(input: StackedBarsInput): SafeHtml {
  const width = input.width ?? CHART_WIDTH.full;
  const height = 260;
  const left = 44;
  const right = 8;
  const top = 28;
  const bottom = 28;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const totals = input.buckets.map((b) => input.series.reduce((sum, s) => sum + (b.values[s.key] ?? 0), 0));
  const max = niceCeiling(Math.max(0, ...totals));
  const slot = plotW / Math.max(1, input.buckets.length);
  const barW = Math.max(1, slot * 0.8);
  const y = (v: number) => top + plotH - (v / max) * plotH;
  const parts: SafeHtml[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    parts.push(
      html`<line class="axis" x1="${left}" x2="${width - right}" y1="${y(v)}" y2="${y(v)}"/><text x="${left - 4}" y="${y(v) + 4}" text-anchor="end">${formatNumber(v)}</text>`,
    );
  }
  input.buckets.forEach((bucket, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    let base = 0;
    for (const s of input.series) {
      const v = bucket.values[s.key] ?? 0;
      if (v > 0) {
        parts.push(
          html`<rect x="${x.toFixed(1)}" y="${y(base + v).toFixed(1)}" width="${barW.toFixed(1)}" height="${(y(base) - y(base + v)).toFixed(1)}" class="s-${s.key}" fill="${s.color}"><title>${bucket.label}: ${formatNumber(v)} ${s.label}</title></rect>`,
        );
      }
      base += v;
    }
    if (i % input.labelEvery === 0) {
      parts.push(
        html`<text x="${(x + barW / 2).toFixed(1)}" y="${height - bottom + 16}" text-anchor="middle">${bucket.label}</text>`,
      );
    }
  });
  parts.push(...legend(input.series, left, 14));
  return frame(input.id, input.title, input.description, width, height, parts);
}

export interface GroupedBarsInput {
  id: string;
  title: string;
  description: string;
  series: Series[];
  /** One group of bars per row (e.g. per task); null: no data. */
  rows: { label: string; values: Record<string, number | null> }[];
  unit?: string;
  /** The viewBox width: the CSS pixels the chart gets (CHART_WIDTH). */
  width?: number;
}

/** Grouped horizontal bars, one group per row (e.g. failures or durations by task). */
export function groupedBars(input: GroupedBarsInput): SafeHtml {
  const width = input.width ?? CHART_WIDTH.half;
  const labelW = 190;
  const right = 80;
  const top = 30;
  const barH = 16;
  const gap = 3;
  const groupH = input.series.length * (barH + gap) + 12;
  const height = top + Math.max(1, input.rows.length) * groupH + 6;
  const plotW = width - labelW - right;
  const values = input.rows.flatMap((r) => input.series.map((s) => r.values[s.key] ?? 0));
  const max = niceCeiling(Math.max(0, ...values));
  const unit = input.unit ?? '';
  const parts: SafeHtml[] = [];
  if (input.rows.length === 0) {
    parts.push(html`<text x="${labelW}" y="${top + 14}">No runs in this window.</text>`);
  }
  input.rows.forEach((row, i) => {
    const y0 = top + i * groupH;
    const middle = y0 + (input.series.length * (barH + gap) - gap) / 2;
    parts.push(html`<text x="${labelW - 8}" y="${middle + 4}" text-anchor="end">${row.label}</text>`);
    input.series.forEach((s, j) => {
      const v = row.values[s.key];
      const y = y0 + j * (barH + gap);
      const w = v ? Math.max(1, (v / max) * plotW) : 0;
      const figure = v === null || v === undefined ? '–' : `${formatNumber(v)}${unit}`;
      parts.push(
        html`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" rx="2" class="s-${s.key}" fill="${s.color}"><title>${row.label}, ${s.label}: ${figure}</title></rect><text class="figure" x="${labelW + w + 5}" y="${y + barH - 4}">${figure}</text>`,
      );
    });
  });
  parts.push(...legend(input.series, labelW, 14));
  return frame(input.id, input.title, input.description, width, height, parts);
}
