// The blog domain's public surface: everything outside src/domains/blog imports from here, except
// the task definitions (*.task.ts), which only src/task-registry.ts reads.
export { postHoldOwner } from './generate-post.task.ts';
export { createLlmWriter } from './llm-writer.ts';
export { createOfflineWriter } from './offline-writer.ts';
export { POST_PAGE_CSP, renderNotFoundPage, renderPostPage } from './post-page.ts';
export { posts } from './posts.repository.ts';
