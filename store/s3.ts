/**
 * The one S3 client factory: every S3 client in rankflow (the artifact store, the embedded services'
 * probes, tests) is made here, so addressing, checksums, retries and timeouts are the same everywhere.
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

// The SDK warns on every process start that releases after January 2027 need Node 22; the pinned SDK
// runs on Node 20, so the warning is noise for rankflow's users.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Where an S3(-compatible) server is and how to sign requests to it. */
export interface S3Endpoint {
  /** For S3-compatible servers; AWS S3 when absent. */
  endpoint?: string | undefined;
  region?: string | undefined;
  /** Explicit keys; without both, the usual AWS credential chain. */
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  /** Path-style addressing (default: on when an endpoint is given; most S3-compatible servers need it). */
  forcePathStyle?: boolean | undefined;
}

export interface S3ClientOptions {
  /** Give up on connecting after this long (default 3 s): a dead server is an error, not a hang. */
  connectionTimeoutMs?: number;
  /** Give up on a request idle for this long (default 60 s). */
  requestTimeoutMs?: number;
  /** SDK attempts per request (default 5). */
  maxAttempts?: number;
}

/**
 * Client settings: path-style addressing for S3-compatible servers, checksums only when the operation
 * requires them (S3-compatible servers reject, or worse store, the CRC32 trailers the SDK adds by
 * default), bounded connection and request timeouts.
 */
export function s3ClientConfig(a: S3Endpoint, opts: S3ClientOptions = {}): S3ClientConfig {
  return {
    endpoint: a.endpoint,
    region: a.region ?? 'us-east-1',
    forcePathStyle: a.forcePathStyle ?? a.endpoint !== undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...(a.accessKeyId && a.secretAccessKey
      ? { credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey } }
      : {}),
    maxAttempts: opts.maxAttempts ?? 5,
    requestHandler: {
      connectionTimeout: opts.connectionTimeoutMs ?? 3_000,
      requestTimeout: opts.requestTimeoutMs ?? 60_000,
    },
  };
}

export function makeS3Client(a: S3Endpoint, opts: S3ClientOptions = {}): S3Client {
  return new S3Client(s3ClientConfig(a, opts));
}
