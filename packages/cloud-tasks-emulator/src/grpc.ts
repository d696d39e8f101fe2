// @backend/cloud-tasks-emulator/grpc: the emulator's gRPC transport on its own, for a stand-in
// server with handlers of your own (to record exactly what a client sends, say): the Cloud Tasks
// and Cloud Scheduler service definitions read from the protos the official clients ship, the
// server that binds handlers to them, and the errors a handler throws to answer with a status.
export { ApiError, alreadyExists, Code, failedPrecondition, invalidArgument, notFound } from './errors.ts';
export { type BoundService, type GrpcServer, type Handler, startGrpcServer } from './grpc-server.ts';
export { loadServices, type ProtoObject, type ServiceSpec, type Services } from './protos.ts';
