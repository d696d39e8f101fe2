// The auth domain's public surface: everything outside src/domains/auth imports from here.
export { isToken, randomToken } from './auth-tokens.ts';
export { createLoginService, LOGIN_STATE_TTL_MS, type LoginService, SESSION_ABSOLUTE_TTL_MS } from './login.service.ts';
export { IssuerUnavailableError } from './oidc.client.ts';
