// The scraper domain's public surface: everything outside src/domains/scraper imports from here,
// except the task definitions (*.task.ts), which only src/task-registry.ts reads.
export { scrapedPages } from './pages.repository.ts';
export { createSafeFetcher } from './safe-fetch.ts';
