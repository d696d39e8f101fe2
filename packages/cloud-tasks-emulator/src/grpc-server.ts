// The gRPC transport (what the official clients use by default): each RPC of the loaded service
// definitions is bound to its handler; an ApiError becomes the status and message the client sees.
import * as grpc from '@grpc/grpc-js';
import type { LogFn } from './context.ts';
import { Code, toApiError } from './errors.ts';
import { decodeBinary, encodeBinary, type ProtoObject, type ServiceSpec } from './protos.ts';
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

export async function startGrpcServer(
  host: string,
  port: number,
  services: BoundService[],
  log: LogFn,
): Promise<GrpcServer> {
  const server = new grpc.Server({
    // Tasks go up to 1 MB; leave room for the envelope.
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
  });
  for (const { spec, handlers } of services) {
    const definition: Record<string, grpc.MethodDefinition<ProtoObject, ProtoObject>> = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of spec.methods) {
      definition[method.name] = {
        path: method.path,
        requestStream: false,
        responseStream: false,
        originalName: method.name,
        requestSerialize: (value: ProtoObject) => Buffer.from(encodeBinary(method.requestType, value)),
        requestDeserialize: (bytes: Buffer) => decodeBinary(method.requestType, bytes),
        responseSerialize: (value: ProtoObject) => Buffer.from(encodeBinary(method.responseType, value)),
        responseDeserialize: (bytes: Buffer) => decodeBinary(method.responseType, bytes),
      };
      const handler = handlers[method.name];
      implementation[method.name] = (
        call: grpc.ServerUnaryCall<ProtoObject, ProtoObject>,
        callback: grpc.sendUnaryData<ProtoObject>,
      ) => {
        const fail = (err: unknown) => {
          const apiError = toApiError(err);
          if (apiError.code === Code.INTERNAL) log('error', `${method.name} failed`, { err: String(err) });
          const metadata = new grpc.Metadata();
          // Google's servers put the google.rpc.Status with its details in this trailer.
          const bin = statusDetailsBin(apiError);
          if (bin) metadata.set('grpc-status-details-bin', bin);
          callback({ code: apiError.code, details: apiError.message, metadata });
        };
        if (!handler) {
          callback({ code: Code.UNIMPLEMENTED, details: `${method.name} is not emulated.` });
          return;
        }
        let result: ProtoObject | Promise<ProtoObject>;
        try {
          result = handler(call.request);
        } catch (err) {
          fail(err);
          return;
        }
        if (result instanceof Promise) result.then((value) => callback(null, value), fail);
        else callback(null, result);
      };
    }
    server.addService(definition, implementation);
  }
  const boundPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${host.includes(':') ? `[${host}]` : host}:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        // Calls in progress get a moment to finish; then the rest are cut.
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
