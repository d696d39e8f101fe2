// The post writer port: what the blog domain asks of whatever writes a post (a language model
// behind an OpenAI-compatible API, or the offline extractive writer), and the one schema every
// written post must pass before it is stored, whoever wrote it.
import { z } from 'zod';

/** What a post is written from: a scraped page (its readable text), or a bare topic. */
export type PostSource =
  | { kind: 'page'; url: string; title: string; text: string; byline: string | null; lang: string | null }
  | { kind: 'topic'; topic: string };

export interface WrittenPost {
  title: string;
  summary: string;
  /** The body, without the title as a heading (the page shows the title). */
  markdown: string;
  model: string;
  promptTokens: number;
  completionTokens: number;
  /** Cost in millionths of a USD; 0 when the price is unknown or nothing was called. */
  costMicros: number;
  offline: boolean;
}

export interface PostWriter {
  readonly name: string;
  /** False when the writer needs a page to write from (the offline writer): a bare topic is refused before anything is charged. */
  readonly writesTopics: boolean;
  write(source: PostSource, opts: { signal?: AbortSignal }): Promise<WrittenPost>;
  /** A cheap call that fails when the writer's dependency is unreachable (health.check); none offline. */
  probe?(signal: AbortSignal): Promise<void>;
}

/** Bounds a stored post must respect (a model's answer is checked against them again). */
export const POST_LIMITS = {
  titleMax: 200,
  summaryMax: 600,
  /** Shorter than this is not a post (a model that answers "Sure!" must not be published). */
  markdownMin: 200,
  markdownMax: 40_000,
} as const;

export const writtenPostSchema = z.object({
  title: z.string().trim().min(1).max(POST_LIMITS.titleMax),
  summary: z.string().trim().min(1).max(POST_LIMITS.summaryMax),
  markdown: z.string().trim().min(POST_LIMITS.markdownMin).max(POST_LIMITS.markdownMax),
});
