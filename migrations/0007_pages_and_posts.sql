-- 0007: scraped pages and generated blog posts.

-- One row per fetch: what scraper.scrape_page read from a URL and extracted. A recent fetch of
-- the same URL is reused instead of fetching again.
CREATE TABLE scraped_pages (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  url text NOT NULL,
  final_url text NOT NULL,
  http_status integer NOT NULL,
  content_type text NOT NULL,
  charset text NOT NULL,
  bytes integer NOT NULL,
  -- SHA-256 of the decoded HTML: the same page fetched twice has the same hash.
  content_hash text NOT NULL,
  title text NOT NULL,
  byline text,
  lang text,
  site_name text,
  excerpt text,
  text text NOT NULL,
  word_count integer NOT NULL,
  fetched_at timestamptz NOT NULL
);

CREATE INDEX scraped_pages_url_idx ON scraped_pages (url, fetched_at DESC);

-- One post per request (the WhatsApp message that asked for it), published at /posts/{slug}.
CREATE TABLE posts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  request_id text NOT NULL UNIQUE,
  slug text NOT NULL UNIQUE,
  account_id bigint NOT NULL REFERENCES accounts (id),
  page_id bigint REFERENCES scraped_pages (id),
  source_url text,
  topic text,
  title text NOT NULL,
  summary text NOT NULL,
  markdown text NOT NULL,
  -- Rendered once from the Markdown, with raw HTML escaped and only http(s)/mailto links.
  html text NOT NULL,
  lang text,
  model text NOT NULL,
  offline boolean NOT NULL,
  prompt_tokens integer NOT NULL DEFAULT 0,
  completion_tokens integer NOT NULL DEFAULT 0,
  -- Millionths of a US dollar, as priced by the configured model; 0 offline.
  cost_micros bigint NOT NULL DEFAULT 0,
  credits integer NOT NULL,
  created_at timestamptz NOT NULL,
  CHECK ((page_id IS NULL) = (topic IS NOT NULL))
);

CREATE INDEX posts_account_idx ON posts (account_id, id);
