// The API definitions, read from the protos that @google-cloud/tasks and @google-cloud/scheduler
// ship, so the emulator and the official clients agree on every field by construction. One
// protobufjs root per package serves both transports: binary for gRPC, proto3 JSON for REST.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as json from 'proto3-json-serializer';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** The plain-object shape handlers see, the same from both transports (camelCase, enums by name). */
export const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: false, oneofs: false };

// biome-ignore lint/suspicious/noExplicitAny: protobuf plain objects are dynamic by nature.
export type ProtoObject = Record<string, any>;

export interface HttpBinding {
  verb: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** e.g. /v2/{parent=projects/*\/locations/*}/queues */
  template: string;
  /** "*", a field name, or undefined (no body). */
  body: string | undefined;
}

export interface MethodSpec {
  name: string;
  /** gRPC path: /google.cloud.tasks.v2.CloudTasks/CreateTask */
  path: string;
  requestType: protobuf.Type;
  responseType: protobuf.Type;
  http: HttpBinding[];
}

export interface ServiceSpec {
  fullName: string;
  methods: MethodSpec[];
}

/**
 * Locates a package's build/protos folder. Its `exports` map may hide package.json, so start from
 * the entry point (whose depth differs between packages) and walk up to the package root.
 */
function protosDir(pkg: string): string {
  let dir = path.dirname(require.resolve(pkg));
  while (!existsSync(path.join(dir, 'build', 'protos', 'protos.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find build/protos/protos.json in ${pkg}`);
    dir = parent;
  }
  return path.join(dir, 'build', 'protos');
}

const roots = new Map<string, protobuf.Root>();

function loadService(pkg: string, serviceName: string): ServiceSpec {
  let root = roots.get(pkg);
  if (!root) {
    root = protobuf.Root.fromJSON(require(path.join(protosDir(pkg), 'protos.json')));
    roots.set(pkg, root);
  }
  const service = root.lookupService(serviceName);
  const methods: MethodSpec[] = [];
  for (const method of Object.values(service.methods)) {
    method.resolve();
    methods.push({
      name: method.name,
      path: `/${serviceName}/${method.name}`,
      requestType: method.resolvedRequestType!,
      responseType: method.resolvedResponseType!,
      http: httpBindings(method),
    });
  }
  return { fullName: serviceName, methods };
}

function httpBindings(method: protobuf.Method): HttpBinding[] {
  const out: HttpBinding[] = [];
  for (const option of method.parsedOptions ?? []) {
    const rule = (option as Record<string, Record<string, string> | undefined>)['(google.api.http)'];
    if (!rule) continue;
    for (const verb of ['get', 'post', 'put', 'patch', 'delete'] as const) {
      const template = rule[verb];
      if (template) out.push({ verb, template, body: rule.body });
    }
  }
  return out;
}

export interface Services {
  tasks: ServiceSpec;
  /** Cloud Tasks v2beta3, for what only it reports (queue stats); served over the same queues. */
  tasksV2beta3: ServiceSpec;
  scheduler: ServiceSpec;
}

let cache: Services | undefined;

/** Cloud Tasks v2 and v2beta3 and Cloud Scheduler v1, loaded once per process. */
export function loadServices(): Services {
  cache ??= {
    tasks: loadService('@google-cloud/tasks', 'google.cloud.tasks.v2.CloudTasks'),
    tasksV2beta3: loadService('@google-cloud/tasks', 'google.cloud.tasks.v2beta3.CloudTasks'),
    scheduler: loadService('@google-cloud/scheduler', 'google.cloud.scheduler.v1.CloudScheduler'),
  };
  return cache;
}

export function decodeBinary(type: protobuf.Type, bytes: Uint8Array): ProtoObject {
  return type.toObject(type.decode(bytes), TO_OBJECT);
}

export function encodeBinary(type: protobuf.Type, object: ProtoObject): Uint8Array {
  return type.encode(type.fromObject(object)).finish();
}

/** proto3 JSON (numbers or names for enums, base64 bytes, RFC 3339 times, "10s" durations) → plain object. */
export function fromJson(type: protobuf.Type, value: unknown): ProtoObject {
  const message = json.fromProto3JSON(type, value as json.JSONValue);
  if (!message) throw new Error(`not a valid ${type.name}`);
  return type.toObject(message, TO_OBJECT);
}

export function toJson(type: protobuf.Type, object: ProtoObject, numericEnums: boolean): unknown {
  return json.toProto3JSON(type.fromObject(object), { numericEnums });
}
