// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by package or source file, and
// the functions with the most self time. Used for the emulator's profiles in results/emulator.md.
//
//   node bench/cpu-profile.ts FILE.cpuprofile [--top 30]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' } },
});
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
profile.samples.forEach((id, i) => {
  self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);

/** Where a frame's code lives: a package under node_modules, the emulator's source file, Node's internals. */
function place(url: string, name: string): string {
  if (url === '') return name.startsWith('(') ? name : '(native)';
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith('node:')) return url;
  const src = url.indexOf('/src/');
  return src >= 0 ? url.slice(url.lastIndexOf('/', src - 1) + 1) : url;
}

const byPlace = new Map<string, number>();
const byFunction = new Map<string, number>();
for (const [id, t] of self) {
  const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
  const where = place(url, functionName);
  byPlace.set(where, (byPlace.get(where) ?? 0) + t);
  const fn = `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
  byFunction.set(fn, (byFunction.get(fn) ?? 0) + t);
}
const pct = (t: number) => `${((100 * t) / total).toFixed(1)} %`;
const busy = total - (byPlace.get('(idle)') ?? 0);
console.log(`${positionals[0]}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle\n`);
console.log('| self time by place | share | of busy |\n|---|---|---|');
for (const [k, t] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, 25))
  console.log(`| ${k} | ${pct(t)} | ${((100 * t) / busy).toFixed(1)} % |`);
console.log('\n| function (self) | share |\n|---|---|');
for (const [k, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top)))
  console.log(`| ${k} | ${pct(t)} |`);
