// One list query of a dashboard page with representative parameters: each *.queries.ts module
// exports its EXPLAIN_CASES, which the dashboard benchmark runs EXPLAIN (ANALYZE) on.

export interface ExplainCase {
  name: string;
  sql: string;
  params: unknown[];
}
