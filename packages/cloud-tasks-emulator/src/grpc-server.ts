// The gRPC transport (what the official clients use by default): each RPC of the loaded service
// definitions is bound to its handler; an ApiError becomes the status and message the client sees.
//
// Every Cloud Tasks and Cloud Scheduler RPC is unary, so this speaks gRPC's unary form directly on
// node:http2 (h2c, as every gRPC client does with insecure credentials): one length-prefixed
// request message, then the response headers, one message and the grpc-status trailers, or a
// trailers-only answer for an error. grpc-js's server did the same with interceptors, metadata
// objects, deadline timers and per-call stream wrappers around it, and took about twice the CPU
// per call (bench/results/emulator.md, 2026-12-02).
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import type { LogFn } from './context.ts';
import { Code, toApiError } from './errors.ts';
import { decodeBinary, encodeBinary, type MethodSpec, type ProtoObject, type ServiceSpec } from './protos.ts';
import { statusDetailsBin } from './rpc-status.ts';

export type Handler = (request: ProtoObject) => ProtoObject | Promise<ProtoObject>;

export interface BoundService {
  spec: ServiceSpec;
  handlers: Record<string, Handler>;
}

export interface GrpcServer {
  readonly port: number;
  close(): Promise<void>;
}

// Tasks go up to 1 MB; leave room for the envelope.
const MAX_RECEIVE_BYTES = 8 * 1024 * 1024;
const CONTENT_TYPE = 'application/grpc+proto';

interface Route {
  method: MethodSpec;
  handler: Handler | undefined;
}

export async function startGrpcServer(
  host: string,
  port: number,
  services: BoundService[],
  log: LogFn,
): Promise<GrpcServer> {
  const routes = new Map<string, Route>();
  for (const { spec, handlers } of services) {
    for (const method of spec.methods) routes.set(method.path, { method, handler: handlers[method.name] });
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  // As grpc-js configured its server: no per-session memory cap (1 MB tasks from many callers
  // would otherwise be refused with ENHANCE_YOUR_CALM).
  const server = http2.createServer({ maxSessionMemory: Number.MAX_SAFE_INTEGER });
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => {}); // a client that went away; its streams end with it
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {}); // cancelled by the client: nothing to answer
    const contentType = String(headers['content-type'] ?? '');
    if (headers[':method'] !== 'POST' || !contentType.startsWith('application/grpc')) {
      if (!stream.destroyed) stream.respond({ ':status': 415 }, { endStream: true });
      return;
    }
    const path = String(headers[':path'] ?? '');
    const route = routes.get(path);
    if (!route) {
      sendStatus(stream, Code.UNIMPLEMENTED, `The server does not implement the method ${path}`);
      return;
    }
    const encoding = String(headers['grpc-encoding'] ?? 'identity');
    const chunks: Buffer[] = [];
    let length = 0;
    let declared = -1;
    stream.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      length += chunk.length;
      // The prefix declares the message's size: refuse an oversized one as soon as it is known.
      if (declared < 0 && length >= 5) {
        declared = (chunks.length === 1 ? chunk : Buffer.concat(chunks)).readUInt32BE(1);
      }
      if (declared > MAX_RECEIVE_BYTES || length > MAX_RECEIVE_BYTES + 5) {
        stream.removeAllListeners('data');
        stream.removeAllListeners('end');
        chunks.length = 0;
        sendStatus(
          stream,
          Code.RESOURCE_EXHAUSTED,
          `Received message larger than max (${Math.max(declared, length - 5)} vs. ${MAX_RECEIVE_BYTES})`,
        );
      }
    });
    stream.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      let request: ProtoObject;
      try {
        request = decodeBinary(route.method.requestType, readMessage(body, encoding));
      } catch (err) {
        const status = err as { code?: unknown; message: string };
        if (typeof status.code === 'number') sendStatus(stream, status.code, status.message);
        else sendStatus(stream, Code.INTERNAL, `Error deserializing request: ${String(err)}`);
        return;
      }
      call(stream, route, request, log);
    });
  });
  const boundPort = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        // Calls in progress get a moment to finish; then the rest are cut.
        const timer = setTimeout(() => {
          for (const session of sessions) session.destroy();
        }, 1000);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        for (const session of sessions) session.close();
      }),
  };
}

/** The one message of a unary request: a 5-byte prefix (compressed flag, length), then the bytes. */
function readMessage(body: Buffer, encoding: string): Buffer {
  if (body.length < 5) throw statusError(Code.INTERNAL, 'Received an incomplete request message');
  const compressed = body[0] === 1;
  const size = body.readUInt32BE(1);
  if (body.length !== 5 + size)
    throw statusError(Code.UNIMPLEMENTED, 'Received more than one message for a unary call');
  const message = body.subarray(5);
  if (!compressed) return message;
  if (encoding === 'gzip') return zlib.gunzipSync(message);
  if (encoding === 'deflate') return zlib.inflateSync(message);
  throw statusError(Code.INTERNAL, `Received compressed message but "grpc-encoding" header was ${encoding}`);
}

function statusError(code: number, message: string): { code: number; message: string } {
  return { code, message };
}

function call(stream: http2.ServerHttp2Stream, route: Route, request: ProtoObject, log: LogFn): void {
  const { method, handler } = route;
  const fail = (err: unknown) => {
    const apiError = toApiError(err);
    if (apiError.code === Code.INTERNAL) log('error', `${method.name} failed`, { err: String(err) });
    // Google's servers put the google.rpc.Status with its details in this trailer.
    const bin = statusDetailsBin(apiError);
    sendStatus(stream, apiError.code, apiError.message, bin);
  };
  const reply = (value: ProtoObject) => {
    let bytes: Uint8Array;
    try {
      bytes = encodeBinary(method.responseType, value);
    } catch (err) {
      fail(err);
      return;
    }
    if (stream.destroyed || stream.closed) return;
    const frame = Buffer.allocUnsafe(5 + bytes.length);
    frame[0] = 0;
    frame.writeUInt32BE(bytes.length, 1);
    frame.set(bytes, 5);
    stream.respond({ ':status': 200, 'content-type': CONTENT_TYPE }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': '' }));
    stream.end(frame);
  };
  if (!handler) {
    sendStatus(stream, Code.UNIMPLEMENTED, `${method.name} is not emulated.`);
    return;
  }
  let result: ProtoObject | Promise<ProtoObject>;
  try {
    result = handler(request);
  } catch (err) {
    fail(err);
    return;
  }
  if (result instanceof Promise) result.then(reply, fail);
  else reply(result);
}

/** A trailers-only answer: the status in the response headers, no message. */
function sendStatus(stream: http2.ServerHttp2Stream, code: number, message: string, detailsBin?: Buffer): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const headers: http2.OutgoingHttpHeaders = {
    ':status': 200,
    'content-type': CONTENT_TYPE,
    'grpc-status': String(code),
    'grpc-message': encodeURI(message),
  };
  if (detailsBin) headers['grpc-status-details-bin'] = detailsBin.toString('base64');
  stream.respond(headers, { endStream: true });
}
