/**
 * The artifact store: where checkpoints, logs, sweep manifests and result records live. The same keys
 * are used on an S3-compatible bucket and on a local folder (the embedded default can use either).
 *
 * The key layout is in `keys.ts`; the S3 client comes from the one factory in `s3.ts`.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile, link, unlink } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3ServiceException,
  type S3Client,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { makeS3Client, type S3Endpoint } from './s3.js';
import { UserError } from '../core/errors.js';

export interface ArtifactStore {
  /** A short human description (`s3://bucket/prefix at http://...` or `file:///...`). */
  readonly description: string;
  get(key: string): Promise<Buffer | null>;
  put(key: string, body: Buffer | string): Promise<void>;
  /** Writes only if the key does not exist yet; returns false (and writes nothing) if it does. */
  putIfAbsent(key: string, body: Buffer | string): Promise<boolean>;
  /** Uploads a file (multipart for large files on S3). */
  putFile(key: string, path: string): Promise<void>;
  /** Downloads to a file; false if the key does not exist. */
  getFile(key: string, path: string): Promise<boolean>;
  exists(key: string): Promise<boolean>;
  /** All keys under a prefix, sorted. */
  list(prefix: string): Promise<string[]>;
  delete(key: string): Promise<void>;
}

/** A key that could escape the store (`..`, absolute, empty parts): a user error, never a stack trace. */
function checkKey(key: string): void {
  if (key === '' || key.startsWith('/') || key.split('/').some((p) => p === '..' || p === '.' || p === '')) {
    throw new UserError(`invalid artifact key \`${key.slice(0, 200)}\` (keys are relative, without . or .. parts)`);
  }
}

const FULL_CODES = new Set(['ENOSPC', 'EDQUOT']);
const FULL_TEXT =
  /no space left on device|disk quota exceeded|storagefull|insufficient ?storage|no (free|writable) volumes?|not enough space/i;

/**
 * True when `e` (or an error it wraps) says the store has no room: ENOSPC/EDQUOT on a folder, HTTP 507 or a
 * "no free volumes"/"storage full" answer from an S3-compatible server. Retrying does not help until someone
 * frees space, so callers give up at once and say so.
 */
export function isStoreFull(e: unknown): boolean {
  for (let cur = e, depth = 0; cur && depth < 8; cur = (cur as { cause?: unknown }).cause, depth++) {
    const err = cur as { code?: unknown; name?: unknown; message?: unknown; $metadata?: { httpStatusCode?: number } };
    if (typeof err.code === 'string' && FULL_CODES.has(err.code)) return true;
    if (err.$metadata?.httpStatusCode === 507) return true;
    if (FULL_TEXT.test(`${String(err.name ?? '')} ${String(err.message ?? '')}`)) return true;
  }
  return false;
}

/** Runs `write` into a temporary file; the file is removed if anything fails (a full disk included). */
async function viaTemp<T>(tmp: string, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}

/** A store in a local folder. Writes are atomic (temporary file, then rename or link). */
export class LocalStore implements ArtifactStore {
  readonly description: string;
  constructor(readonly root: string) {
    this.description = `file://${root}`;
  }
  private path(key: string): string {
    checkKey(key);
    return join(this.root, ...key.split('/'));
  }
  private async temp(target: string): Promise<string> {
    await mkdir(dirname(target), { recursive: true });
    return `${target}.tmp-${randomBytes(6).toString('hex')}`;
  }
  async get(key: string): Promise<Buffer | null> {
    try {
      return await readFile(this.path(key));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }
  async put(key: string, body: Buffer | string): Promise<void> {
    const target = this.path(key);
    const tmp = await this.temp(target);
    await viaTemp(tmp, async () => {
      await writeFile(tmp, body);
      await rename(tmp, target);
    });
  }
  async putIfAbsent(key: string, body: Buffer | string): Promise<boolean> {
    const target = this.path(key);
    const tmp = await this.temp(target);
    try {
      await writeFile(tmp, body);
      await link(tmp, target); // atomic: fails with EEXIST if another writer won
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }
  async putFile(key: string, path: string): Promise<void> {
    const target = this.path(key);
    const tmp = await this.temp(target);
    await viaTemp(tmp, async () => {
      await pipeline(createReadStream(path), createWriteStream(tmp));
      await rename(tmp, target);
    });
  }
  async getFile(key: string, path: string): Promise<boolean> {
    const source = this.path(key);
    await mkdir(dirname(path), { recursive: true });
    try {
      await pipeline(createReadStream(source), createWriteStream(path));
      return true;
    } catch (e) {
      await rm(path, { force: true }); // never a partial download
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }
  async exists(key: string): Promise<boolean> {
    try {
      return (await stat(this.path(key))).isFile();
    } catch {
      return false;
    }
  }
  async list(prefix: string): Promise<string[]> {
    if (prefix.startsWith('/') || prefix.split('/').some((p) => p === '..' || p === '.')) {
      throw new UserError(
        `invalid artifact key prefix \`${prefix.slice(0, 200)}\` (keys are relative, without . or .. parts)`,
      );
    }
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (!entry.name.includes('.tmp-')) out.push(relative(this.root, full).split(sep).join('/'));
      }
    };
    // Walk only the folder part of the prefix, then filter by the full prefix.
    const folder = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    await walk(folder ? join(this.root, ...folder.split('/')) : this.root);
    return out.filter((k) => k.startsWith(prefix)).sort();
  }
  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }
}

export interface S3Settings extends S3Endpoint {
  bucket: string;
  prefix?: string | undefined;
}

/** Multipart uploads above this size (S3's minimum part size is 5 MiB). */
const MULTIPART_PART = 8 * 1024 * 1024;

function isNotFound(e: unknown): boolean {
  if (e instanceof S3ServiceException) {
    return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
  }
  return false;
}

export class S3Store implements ArtifactStore {
  readonly description: string;
  readonly client: S3Client;
  private readonly prefix: string;
  constructor(readonly settings: S3Settings) {
    this.client = makeS3Client(settings);
    this.prefix = settings.prefix ? settings.prefix.replace(/\/+$/, '') + '/' : '';
    this.description = `s3://${settings.bucket}/${this.prefix}${settings.endpoint ? ` at ${settings.endpoint}` : ''}`;
  }
  private key(key: string): string {
    checkKey(key);
    return this.prefix + key;
  }
  /** Creates the bucket if it does not exist (the embedded default and tests use this). */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }));
    } catch (e) {
      if (!isNotFound(e) && !(e instanceof S3ServiceException && e.$metadata?.httpStatusCode === 403)) throw e;
      await this.client.send(new CreateBucketCommand({ Bucket: this.settings.bucket }));
    }
  }
  async get(key: string): Promise<Buffer | null> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }
  async put(key: string, body: Buffer | string): Promise<void> {
    await this.client.send(
      new PutObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key), Body: Buffer.from(body) }),
    );
  }
  async putIfAbsent(key: string, body: Buffer | string): Promise<boolean> {
    // Conditional writes are honoured by AWS S3 but not by every S3-compatible server, so check first;
    // callers serialise writers of one key (one Temporal workflow per run id), this is the second guard.
    if (await this.exists(key)) return false;
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.settings.bucket,
          Key: this.key(key),
          Body: Buffer.from(body),
          IfNoneMatch: '*',
        }),
      );
      return true;
    } catch (e) {
      if (e instanceof S3ServiceException && (e.$metadata?.httpStatusCode === 412 || e.name === 'PreconditionFailed')) {
        return false;
      }
      throw e;
    }
  }
  async putFile(key: string, path: string): Promise<void> {
    const size = (await stat(path)).size;
    if (size < MULTIPART_PART) {
      await this.put(key, await readFile(path));
      return;
    }
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.settings.bucket, Key: this.key(key), Body: createReadStream(path) },
      partSize: MULTIPART_PART,
      queueSize: 4,
      leavePartsOnError: false,
    });
    await upload.done();
  }
  async getFile(key: string, path: string): Promise<boolean> {
    await mkdir(dirname(path), { recursive: true });
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }));
      await pipeline(r.Body as Readable, createWriteStream(path));
      return true;
    } catch (e) {
      await rm(path, { force: true }); // never a partial download
      if (isNotFound(e)) return false;
      throw e;
    }
  }
  async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }));
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }
  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.settings.bucket,
          Prefix: this.prefix + prefix,
          ContinuationToken: token,
        }),
      );
      for (const o of r.Contents ?? []) if (o.Key) out.push(o.Key.slice(this.prefix.length));
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }
  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.settings.bucket, Key: this.key(key) }));
  }
}

/** How to reach the store: `file:<dir>` or S3 settings. */
export type StoreConfig = { kind: 'local'; root: string } | ({ kind: 's3' } & S3Settings);

export function openStore(config: StoreConfig): ArtifactStore {
  return config.kind === 'local' ? new LocalStore(config.root) : new S3Store(config);
}

/** Opens the store and, on S3, creates the bucket if it does not exist yet. */
export async function openReadyStore(config: StoreConfig): Promise<ArtifactStore> {
  const store = openStore(config);
  if (store instanceof S3Store) await store.ensureBucket();
  return store;
}
