// The google.rpc.Code catalogue and the one error type every RPC handler throws; each transport
// renders it its own way (a gRPC status with its details in the grpc-status-details-bin trailer,
// or {"error":{code,message,status,details}} with the HTTP status).

/** google/rpc/code.proto: name → number. */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type CodeName = keyof typeof Code;

const NAME_OF = new Map<number, CodeName>(Object.entries(Code).map(([name, n]) => [n, name as CodeName]));

/** The HTTP status google.rpc.Code maps to (code.proto comments). */
const HTTP_OF: Record<number, number> = {
  0: 200,
  1: 499,
  2: 500,
  3: 400,
  4: 504,
  5: 404,
  6: 409,
  7: 403,
  8: 429,
  9: 400,
  10: 409,
  11: 400,
  12: 501,
  13: 500,
  14: 503,
  15: 500,
  16: 401,
};

export function codeName(code: number): CodeName {
  return NAME_OF.get(code) ?? 'UNKNOWN';
}

export function httpStatusOf(code: number): number {
  return HTTP_OF[code] ?? 500;
}

/** The rpc code an HTTP answer from a target counts as, for Task.lastAttempt.responseStatus and Job.status. */
export function codeForHttpStatus(status: number): number {
  if (status >= 200 && status < 300) return Code.OK;
  switch (status) {
    case 400:
      return Code.INVALID_ARGUMENT;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.NOT_FOUND;
    case 409:
      return Code.ABORTED;
    case 416:
      return Code.OUT_OF_RANGE;
    case 429:
      return Code.RESOURCE_EXHAUSTED;
    case 499:
      return Code.CANCELLED;
    case 501:
      return Code.UNIMPLEMENTED;
    case 503:
      return Code.UNAVAILABLE;
    case 504:
      return Code.DEADLINE_EXCEEDED;
  }
  if (status >= 400 && status < 500) return Code.FAILED_PRECONDITION;
  if (status >= 500) return Code.INTERNAL;
  return Code.UNKNOWN;
}

/**
 * A google.rpc error detail in its proto3 JSON form: `@type` names the message
 * (type.googleapis.com/google.rpc.ErrorInfo, …), the other keys are its fields.
 */
export type ErrorDetail = { '@type': string } & Record<string, unknown>;

/** An RPC failure with the code, message and details the real service answers with. */
export class ApiError extends Error {
  readonly code: number;
  readonly details: readonly ErrorDetail[];
  constructor(code: number, message: string, details: readonly ErrorDetail[] = []) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.details = details;
  }
  get status(): CodeName {
    return codeName(this.code);
  }
}

export const invalidArgument = (message: string, details?: ErrorDetail[]) =>
  new ApiError(Code.INVALID_ARGUMENT, message, details);
export const notFound = (message: string) => new ApiError(Code.NOT_FOUND, message);
export const alreadyExists = (message: string) => new ApiError(Code.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string) => new ApiError(Code.FAILED_PRECONDITION, message);
export const permissionDenied = (message: string, details?: ErrorDetail[]) =>
  new ApiError(Code.PERMISSION_DENIED, message, details);
export const unimplemented = (message: string) => new ApiError(Code.UNIMPLEMENTED, message);

/** Any thrown value as an ApiError: unknown failures become INTERNAL with their message. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  return new ApiError(Code.INTERNAL, err instanceof Error ? err.message : String(err));
}

// The detail messages Google attaches (google/rpc/error_details.proto), as handlers build them.
const RPC = 'type.googleapis.com/google.rpc.';

export function errorInfo(reason: string, domain: string, metadata: Record<string, string>): ErrorDetail {
  return { '@type': `${RPC}ErrorInfo`, reason, domain, metadata };
}

export function help(description: string, url: string): ErrorDetail {
  return { '@type': `${RPC}Help`, links: [{ description, url }] };
}

export function localizedMessage(message: string): ErrorDetail {
  return { '@type': `${RPC}LocalizedMessage`, locale: 'en-US', message };
}

export function badRequest(violations: { field?: string; description: string }[]): ErrorDetail {
  return { '@type': `${RPC}BadRequest`, fieldViolations: violations };
}
