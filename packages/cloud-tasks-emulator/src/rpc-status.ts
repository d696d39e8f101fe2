// An error's google.rpc.Status in binary, for gRPC's `grpc-status-details-bin` trailer: the code,
// the message and each detail packed in a google.protobuf.Any, as Google's servers send it (the
// official clients decode it into err.statusDetails, err.reason and err.domain). The few message
// types needed (google/rpc/status.proto, error_details.proto) are declared here, so nothing but
// protobufjs is needed to write them.
import protobuf from 'protobufjs';
import type { ApiError, ErrorDetail } from './errors.ts';

const str = (id: number) => ({ type: 'string', id });

const descriptor = {
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: str(1), value: { type: 'bytes', id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: str(2),
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            ErrorInfo: {
              fields: { reason: str(1), domain: str(2), metadata: { keyType: 'string', type: 'string', id: 3 } },
            },
            Help: {
              fields: { links: { rule: 'repeated', type: 'Link', id: 1 } },
              nested: { Link: { fields: { description: str(1), url: str(2) } } },
            },
            LocalizedMessage: { fields: { locale: str(1), message: str(2) } },
            BadRequest: {
              fields: { fieldViolations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
              nested: { FieldViolation: { fields: { field: str(1), description: str(2) } } },
            },
          },
        },
      },
    },
  },
};
const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);

const STATUS = root.lookupType('google.rpc.Status');
const PREFIX = 'type.googleapis.com/';

function packDetail(detail: ErrorDetail): { type_url: string; value: Uint8Array } {
  const { '@type': typeUrl, ...fields } = detail;
  const type = root.lookupType(typeUrl.slice(PREFIX.length));
  return { type_url: typeUrl, value: type.encode(type.fromObject(fields)).finish() };
}

/** The binary google.rpc.Status of an error with details, or undefined when it has none. */
export function statusDetailsBin(error: ApiError): Buffer | undefined {
  if (error.details.length === 0) return undefined;
  const status = STATUS.fromObject({
    code: error.code,
    message: error.message,
    details: error.details.map(packDetail),
  });
  return Buffer.from(STATUS.encode(status).finish());
}
