// Field names in a REST request body, as Google's JSON front end reads them: proto3 JSON parsers
// must accept a field under its lowerCamelCase JSON name and under its proto name
// (`rateLimits` or `rate_limits`; Python's discovery client and hand-written curl send the
// latter), and Google refuses a name that is neither with 400 `Invalid JSON payload received.
// Unknown name "…" at '…': Cannot find field.` plus a google.rpc.BadRequest detail. The JSON
// library the transport uses knows only the camelCase names and drops the rest silently, so the
// body is rewritten to camelCase here first, and unknown names are refused.
import type protobuf from 'protobufjs';
import { badRequest, invalidArgument } from './errors.ts';

interface Unknown {
  name: string;
  /** Where it was, in proto names (`task.http_request`, `items[2]`); '' at the top level. */
  at: string;
}

/** `rate_limits` → `rateLimits` (how protoc derives a field's JSON name). */
function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** `rateLimits` → `rate_limits`, the proto name of a field whose JSON name is derived from it. */
function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function join(at: string, name: string): string {
  return at === '' ? name : `${at}.${name}`;
}

/** The field a JSON key names: its JSON (camelCase) name, or its proto (snake_case) name. */
function fieldFor(type: protobuf.Type, key: string): protobuf.Field | undefined {
  const direct = type.fields[key];
  if (direct) return direct;
  if (!key.includes('_')) return undefined;
  const field = type.fields[camel(key)];
  return field && snake(field.name) === key ? field : undefined;
}

/** A message type to look inside, or undefined for scalars, enums and well-known types with their own JSON form. */
function messageType(field: protobuf.Field): protobuf.Type | undefined {
  field.resolve();
  const resolved = field.resolvedType;
  if (!resolved || !('fields' in resolved)) return undefined;
  // Timestamp, Duration, FieldMask, Any, Struct, Value, wrappers, Empty: not plain messages in JSON.
  if (resolved.fullName.startsWith('.google.protobuf.')) return undefined;
  return resolved as protobuf.Type;
}

function walk(
  type: protobuf.Type,
  value: Record<string, unknown>,
  at: string,
  unknown: Unknown[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    const field = fieldFor(type, key);
    if (!field) {
      unknown.push({ name: key, at });
      continue;
    }
    const protoName = snake(field.name);
    const inner = messageType(field);
    if (!inner || child === null) {
      out[field.name] = child;
    } else if (field.repeated && Array.isArray(child)) {
      out[field.name] = child.map((item, i) =>
        isPlainObject(item) ? walk(inner, item, `${join(at, protoName)}[${i}]`, unknown) : item,
      );
    } else if (field.map && isPlainObject(child)) {
      const entries = Object.entries(child).map(([k, item], i) => [
        k,
        isPlainObject(item) ? walk(inner, item, `${join(at, protoName)}[${i}].value`, unknown) : item,
      ]);
      out[field.name] = Object.fromEntries(entries);
    } else if (isPlainObject(child)) {
      out[field.name] = walk(inner, child, join(at, protoName), unknown);
    } else {
      out[field.name] = child; // the wrong shape: the JSON parser says so
    }
  }
  return out;
}

/**
 * A request body with every field under its camelCase JSON name; throws INVALID_ARGUMENT with
 * Google's wording (one line per unknown name) when a name is not a field of its message.
 */
export function normalizeJsonNames(type: protobuf.Type, value: Record<string, unknown>): Record<string, unknown> {
  const unknown: Unknown[] = [];
  const out = walk(type, value, '', unknown);
  if (unknown.length === 0) return out;
  const violations = unknown.map(({ name, at }) => {
    const description = `Invalid JSON payload received. Unknown name ${JSON.stringify(name)}${at === '' ? '' : ` at '${at}'`}: Cannot find field.`;
    return at === '' ? { description } : { field: at, description };
  });
  throw invalidArgument(violations.map((v) => v.description).join('\n'), [badRequest(violations)]);
}
