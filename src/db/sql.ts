// Small helpers for writing SQL by hand, shared by the repositories.

/** Placeholders for a multi-row VALUES list of `rows` rows of `columns` parameters: ($1, $2), ($3, $4), … */
export function valuesList(rows: number, columns: number, first = 1): string {
  return Array.from(
    { length: rows },
    (_, r) => `(${Array.from({ length: columns }, (_, c) => `$${first + r * columns + c}`).join(', ')})`,
  ).join(', ');
}
