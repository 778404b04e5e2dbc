// Types of the tokenward browser SDK (tokenward.js).

export declare const VERSION: string;

export declare class TokenwardError extends Error {
  constructor(message: string, options?: { status?: number; code?: string });
  /** HTTP status of the server's answer (0 without one). */
  status: number;
  /** OAuth error code (RFC 6749 §5.2), '' without one. */
  code: string;
}
/** No usable session (signed out, revoked, expired): sign in again. */
export declare class LoginRequired extends TokenwardError {}
/** Network failure, 5xx or 429: retry later; the session is kept. */
export declare class TemporarilyUnavailable extends TokenwardError {}

export interface TokenResponse {
  access_token: string;
  token_type?: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  csrf_token?: string;
}

export interface TokenTiming {
  /** seconds */
  lifetime: number;
  /** ms since the epoch */
  expiresAt: number;
  /** ms since the epoch */
  refreshAt: number;
}

/** Access-token claims (RFC 9068); decoded, NOT verified. */
export interface Claims {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  exp?: number;
  iat?: number;
  jti?: string;
  client_id?: string;
  scope?: string;
  sid?: string;
  [claim: string]: unknown;
}

export declare function b64urlDecode(segment: string): Uint8Array;
export declare function b64urlEncode(bytes: Uint8Array): string;
export declare function decodeJsonSegment(segment: string): unknown;
export declare function decodeJwt(token: string): Claims | null;
/** 20 % of the lifetime (seconds), at most 60 s. */
export declare function refreshMargin(lifetime: number): number;
export declare function tokenTiming(body: TokenResponse, receivedAt?: number, margin?: number): TokenTiming;
export declare function isDue(refreshAt: number, now?: number): boolean;
export declare function isInvalidToken(status: number, wwwAuthenticate: string | null | undefined): boolean;
export declare function randomVerifier(bytes?: number): string;
export declare function pkceChallenge(verifier: string): Promise<string>;

export interface ClientOptions {
  /** Authorization server origin; '' (default) = this page's origin. */
  issuer?: string;
  /** Learnt from the first token when omitted (cookie mode). */
  clientId?: string;
  /** 'cookie' (default, recommended) or 'code' (authorization code + PKCE). */
  mode?: 'cookie' | 'code';
  scope?: string;
  redirectUri?: string;
  /** Names the Web Lock, the BroadcastChannel and the localStorage record. */
  name?: string;
  /** Seconds before expiry to refresh (default: 20 % of the lifetime, at most 60 s). */
  refreshMargin?: number;
  fetch?: typeof fetch;
  tokenEndpoint?: string;
  loginEndpoint?: string;
  logoutEndpoint?: string;
  authorizationEndpoint?: string;
  /** Sender-constrained tokens (RFC 9449): a non-extractable P-256 key in IndexedDB. */
  dpop?: boolean;
  /** Where the DPoP key pair is kept (default: IndexedDB, shared by the origin's tabs). */
  dpopKeyStore?: DPoPKeyStore;
  /**
   * Where the tabs' rotation record is committed before the refresh lock is released (default:
   * IndexedDB; null: localStorage only).
   */
  recordStore?: RecordStore | null;
}

export interface RotationRecord {
  seq: number;
  /** ms since the epoch */
  refreshAt: number;
}

export interface RecordStore {
  get(): Promise<RotationRecord | undefined>;
  set(record: RotationRecord): Promise<unknown>;
  delete(): Promise<unknown>;
}

export interface DPoPKeyStore {
  get(): Promise<CryptoKeyPair | undefined>;
  set(keyPair: CryptoKeyPair): Promise<unknown>;
  delete(): Promise<unknown>;
}

export declare function jwkThumbprint(jwk: JsonWebKey): Promise<string>;
export declare function accessTokenHash(token: string): Promise<string>;
export declare function generateDPoPKey(): Promise<CryptoKeyPair>;
export declare function indexedDBKeyStore(name?: string, dbName?: string): DPoPKeyStore;
export declare function indexedDBRecordStore(name?: string, dbName?: string): RecordStore;
export declare function dpopProof(
  keyPair: CryptoKeyPair,
  htm: string,
  htu: string,
  options?: { accessToken?: string | null; nonce?: string | null; iat?: number | null },
): Promise<string>;

export interface LoginOptions {
  username: string;
  password: string;
  scope?: string;
  device?: string;
}

export declare class TokenwardClient {
  constructor(options?: ClientOptions);
  readonly issuer: string;
  clientId: string | null;
  readonly mode: 'cookie' | 'code';
  readonly signedIn: boolean;
  readonly claims: Claims | null;
  /** ms since the epoch; 0 when signed out. */
  readonly expiresAt: number;
  readonly hasSession: boolean;
  readonly dpop: boolean;
  /** The origin's DPoP key pair (created on first use). */
  dpopKey(): Promise<CryptoKeyPair>;
  proof(htm: string, url: string, accessToken?: string | null): Promise<string>;
  onChange(fn: (client: TokenwardClient) => void): () => void;
  login(options: LoginOptions): Promise<Claims | null>;
  restore(): Promise<boolean>;
  loginWithRedirect(options?: { scope?: string; redirectUri?: string }): Promise<void>;
  handleRedirect(url?: string): Promise<boolean>;
  accessToken(): Promise<string>;
  refresh(options?: { rejected?: string | null }): Promise<string>;
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  logout(): Promise<void>;
  forget(): void;
  close(): void;
}

export declare function createClient(options?: ClientOptions): TokenwardClient;
