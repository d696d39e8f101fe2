// google.protobuf.FieldMask for UpdateQueue and UpdateJob: the masked fields come from the
// request, the rest stay; paths may name a whole message or one of its fields.
import { invalidArgument } from './errors.ts';
import type { ProtoObject } from './protos.ts';

/** FieldMask paths in camelCase, whichever transport they came over (gRPC sends snake_case). */
export function maskPaths(mask: unknown): string[] {
  const paths = ((mask as ProtoObject | undefined)?.paths ?? []) as string[];
  return paths
    .flatMap((p) => String(p).split(','))
    .map((p) => p.trim().replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()))
    .filter((p) => p !== '');
}

export interface MaskRules {
  /** Paths an update may change. */
  allowed: ReadonlySet<string>;
  /** Output-only or identifying paths a mask may name but an update never changes. */
  ignored: ReadonlySet<string>;
}

/** `current` with the masked paths taken from `given`; an unknown path is INVALID_ARGUMENT. */
export function applyMask(current: ProtoObject, given: ProtoObject, paths: string[], rules: MaskRules): ProtoObject {
  const out: ProtoObject = structuredClone(current);
  for (const path of paths) {
    if (rules.ignored.has(path)) continue;
    if (!rules.allowed.has(path)) throw invalidArgument(`Invalid update_mask path "${path}".`);
    const [head, leaf] = path.split('.') as [string, string | undefined];
    if (leaf === undefined) {
      out[head] = given[head];
      continue;
    }
    out[head] = { ...(out[head] ?? {}) };
    const value = given[head]?.[leaf];
    if (value === undefined) delete out[head][leaf];
    else out[head][leaf] = value;
  }
  return out;
}
