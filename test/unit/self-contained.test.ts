// The repository stands on its own: nothing in it (code, tests, benchmarks, scripts, docs) sends a
// reader to a document that is not in it (the design notes this project started from), and every
// relative link in its Markdown resolves. Files git tracks and new files it does not ignore are read,
// so a citation fails here before it is committed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const listed = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
  cwd: root,
  encoding: 'utf8',
});
const tracked = [...new Set(listed.split('\0'))]
  .filter((f) => f && existsSync(join(root, f)) && /\.(ts|js|cjs|mjs|md|sql|sh|json|yml|yaml)$|^Dockerfile$/.test(f))
  .filter((f) => f !== 'package-lock.json');

// Citations of the documents outside the repository: the contract's sections, the design notes and
// the reference folder beside the checkout. Written as pieces so this file does not match itself.
const OUTSIDE = new RegExp(
  [
    String.raw`\bSPEC(\.md)?\s*§`,
    String.raw`\bSPEC\.md\b`,
    String.raw`\bDESIGN\.md\b`,
    String.raw`\breference/[a-z-]+\.md`,
    String.raw`\.\./shared\b`,
    String.raw`\b(domain|peers|aesthetics|cloud-tasks)\.md\b`,
    // performance.md is also ours (docs/performance.md): only a bare name cited by section is outside.
    String.raw`(?<!docs/)\bperformance\.md\s*§`,
  ].join('|'),
);
// The reference folder cited by a section number (the word, then the section sign).
const REFERENCE_SECTION = /\breference\s*§/;
// Applied migrations are immutable (their checksum is recorded), so an old comment stays as it is.
const FROZEN = new Set(['migrations/0001_init.sql']);

test('no file cites a document outside the repository', () => {
  const hits: string[] = [];
  for (const file of tracked) {
    if (FROZEN.has(file)) continue;
    const lines = readFileSync(join(root, file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (OUTSIDE.test(line) || REFERENCE_SECTION.test(line))
        hits.push(`${file}:${i + 1}: ${line.trim().slice(0, 120)}`);
    });
  }
  assert.deepEqual(
    hits,
    [],
    `say what the rule means in this repository's own words (docs/ or ARCHITECTURE.md):\n${hits.join('\n')}`,
  );
});

test('every relative link in the Markdown files resolves to a file in the repository', () => {
  const broken: string[] = [];
  for (const file of tracked.filter((f) => f.endsWith('.md'))) {
    const text = readFileSync(join(root, file), 'utf8').replace(/```[\s\S]*?```/g, '');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split('#')[0]!;
      if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // anchors, http:, mailto:
      if (!existsSync(join(root, dirname(file), target))) broken.push(`${file}: ${m[1]}`);
    }
  }
  assert.deepEqual(broken, []);
});
