// Who is using the dashboard: the operator of the request, set by the access plugin
// (http/plugins/operator-access.ts) before any /admin route runs.

export interface Operator {
  /** The verified e-mail of a logged-in operator, or 'loopback' when the dashboard is open locally. */
  readonly email: string;
  /** 'session': logged in through OpenID Connect; 'loopback': no login configured, local client. */
  readonly via: 'session' | 'loopback';
  /** The session's token for forms: every state-changing request must carry it as `_csrf`. */
  readonly csrfToken: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on /admin routes only (null elsewhere). */
    operator: Operator | null;
  }
}
