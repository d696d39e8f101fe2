// A self-signed X.509 certificate for the token-signing key, so /certs can serve what Google's
// https://www.googleapis.com/oauth2/v1/certs serves: { kid: "-----BEGIN CERTIFICATE-----…" }.
// Libraries that read that format (Java's GooglePublicKeysManager, for one) parse certificates,
// not bare public keys. node:crypto reads certificates (X509Certificate) but cannot write them,
// so the few DER structures of RFC 5280 needed are encoded here.
//
// The certificate is deterministic: the same key gives the same bytes (RSA PKCS#1 v1.5 signatures
// are), so a key kept in the data directory keeps its certificate across restarts. Its validity
// runs from 2000 to 2100 rather than from "now": the emulator may run on an injected clock, and
// verifiers only take the public key out of it.
import { createHash, createPublicKey, type KeyObject, sign } from 'node:crypto';

const NOT_BEFORE = Date.UTC(2000, 0, 1);
const NOT_AFTER = Date.UTC(2100, 0, 1);
const SUBJECT = 'Cloud Tasks emulator token signer';

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), length(body.length), body]);
}

const sequence = (...items: Buffer[]) => tlv(0x30, ...items);

/** A non-negative INTEGER from big-endian bytes. */
function integer(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start += 1;
  const trimmed = bytes.subarray(start);
  return tlv(0x02, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5). */
function time(ms: number): Buffer {
  const iso = new Date(ms).toISOString(); // 2000-01-01T00:00:00.000Z
  const digits = `${iso.slice(0, 4)}${iso.slice(5, 7)}${iso.slice(8, 10)}${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
  const year = new Date(ms).getUTCFullYear();
  return year < 2050 ? tlv(0x17, Buffer.from(digits.slice(2))) : tlv(0x18, Buffer.from(digits));
}

function name(commonName: string): Buffer {
  return sequence(tlv(0x31, sequence(oid('2.5.4.3'), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));
}

/** A PEM certificate for `privateKey`'s public key, self-signed with SHA-256 and RSA. */
export function selfSignedCertificate(privateKey: KeyObject): string {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const serial = createHash('sha256').update(spki).digest().subarray(0, 16);
  serial[0] = (serial[0]! & 0x7f) | 0x01; // positive and not zero
  const sha256WithRsa = sequence(oid('1.2.840.113549.1.1.11'), tlv(0x05));
  const tbs = sequence(
    tlv(0xa0, integer(Buffer.from([2]))), // v3
    integer(serial),
    sha256WithRsa,
    name(SUBJECT),
    sequence(time(NOT_BEFORE), time(NOT_AFTER)),
    name(SUBJECT),
    spki,
    tlv(
      0xa3,
      sequence(
        // As Google's signing certificates: not a CA, for digital signatures, for client authentication.
        extension('2.5.29.19', true, sequence()),
        extension('2.5.29.15', true, tlv(0x03, Buffer.from([0x07, 0x80]))),
        extension('2.5.29.37', true, sequence(oid('1.3.6.1.5.5.7.3.2'))),
      ),
    ),
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = sequence(tbs, sha256WithRsa, tlv(0x03, Buffer.from([0]), signature));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}
