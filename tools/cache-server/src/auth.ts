import { createHash, timingSafeEqual } from 'node:crypto';

/** What a request may do, decided from its Authorization header. */
export type Access = 'read-write' | 'read-only' | 'unauthenticated';

type TokenAccess = Exclude<Access, 'unauthenticated'>;

interface KnownToken {
  digest: Buffer;
  access: TokenAccess;
}

// Bearer tokens travel in an HTTP header: printable ASCII without spaces.
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;
const BEARER_HEADER_PATTERN = /^Bearer +([\x21-\x7e]+) *$/i;

/**
 * Checks `Authorization: Bearer <token>` against the configured tokens.
 * No tokens at all means an open server: everyone may read and write.
 */
export class TokenChecker {
  private readonly knownTokens: KnownToken[];

  constructor(readWriteTokens: readonly string[], readOnlyTokens: readonly string[]) {
    this.knownTokens = [
      ...readWriteTokens.map((token, index) => knownToken(token, 'read-write', index)),
      ...readOnlyTokens.map((token, index) => knownToken(token, 'read-only', index)),
    ];
  }

  get enabled(): boolean {
    return this.knownTokens.length > 0;
  }

  accessFor(authorizationHeader: string | undefined): Access {
    if (!this.enabled) return 'read-write';
    const presented = BEARER_HEADER_PATTERN.exec(authorizationHeader ?? '')?.[1];
    if (presented === undefined) return 'unauthenticated';
    const presentedDigest = sha256(presented);
    // Compare against every token without stopping at the first match, so
    // the time taken says nothing about which (or whether a) token matched.
    let access: Access = 'unauthenticated';
    for (const known of this.knownTokens) {
      if (timingSafeEqual(known.digest, presentedDigest) && access !== 'read-write') {
        access = known.access;
      }
    }
    return access;
  }
}

function knownToken(token: string, access: TokenAccess, index: number): KnownToken {
  // The token itself never goes into an error message: it is a secret.
  if (!TOKEN_PATTERN.test(token)) {
    throw new Error(
      `${access} token #${index + 1} is empty or contains spaces, control or non-ASCII characters; ` + 'tokens must be printable ASCII without spaces',
    );
  }
  return { digest: sha256(token), access };
}

// timingSafeEqual needs equal lengths; comparing fixed-size digests also
// keeps the length of the configured tokens from leaking.
function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
