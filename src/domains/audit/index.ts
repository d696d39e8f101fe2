// The audit domain's public surface: everything outside src/domains/audit imports from here.
export { type AuditAction, auditEvents } from './audit.repository.ts';
