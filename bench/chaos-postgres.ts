// The PostgreSQL cluster that the chaos run may restart (`--restart-postgres`): never the shared
// server other people's tests use. Either a throwaway cluster that the run creates with Debian's
// postgresql-common (`pg_createcluster`: a free port, trust authentication, 127.0.0.1 only, not
// started at boot), starts, and drops at the end (`pg_dropcluster --stop`), or an existing one named
// with `--postgres-cluster VERSION/NAME` that nobody else is connected to. Restarts go through
// `pg_ctlcluster --skip-systemctl-redirect` (a fast shutdown: sessions are ended with 57P01, as in a
// real restart), so they work with or without systemd. As root, the cluster belongs to the
// `postgres` user as usual (pg_ctlcluster switches to it).
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const exec = promisify(execFile);

export interface Cluster {
  version: string;
  name: string;
  port: number;
  /** The cluster's `postgres` database over TCP on 127.0.0.1. */
  url: string;
  /** Created by this run: dropped at the end. */
  owned: boolean;
}

interface Listed {
  version: string;
  name: string;
  port: number;
  status: string;
}

/** A throwaway cluster's name: the run's process id, so a leftover can be told from a live run's. */
const OWN_NAME = /^chaos_(\d+)$/;

async function listClusters(): Promise<Listed[]> {
  const { stdout } = await exec('pg_lsclusters', ['--no-header']);
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [version, name, port, status] = line.trim().split(/\s+/);
      return { version: version!, name: name!, port: Number(port), status: status! };
    });
}

/** `VERSION/NAME` (as pg_lsclusters shows it), or a clear error. */
function parseClusterName(value: string): { version: string; name: string } {
  const m = /^(\d+(?:\.\d+)?)\/([A-Za-z0-9_.-]+)$/.exec(value);
  if (!m) throw new Error(`--postgres-cluster ${JSON.stringify(value)}: expected VERSION/NAME, e.g. 15/chaos`);
  return { version: m[1]!, name: m[2]! };
}

/** The newest PostgreSQL server installed (its initdb is there), e.g. "15". */
function newestVersion(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server under ${root}: apt-get install -y postgresql`);
  return versions.sort((a, b) => Number(b) - Number(a))[0]!;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Drops throwaway clusters left by chaos runs that were killed before their clean-up (their
 * process is gone). Only `chaos_<pid>` clusters, which only this script creates. Returns their names.
 */
export async function dropLeftoverClusters(): Promise<string[]> {
  const dropped: string[] = [];
  for (const c of await listClusters()) {
    const pid = OWN_NAME.exec(c.name)?.[1];
    if (pid === undefined || Number(pid) === process.pid || alive(Number(pid))) continue;
    await exec('pg_dropcluster', ['--stop', c.version, c.name]);
    dropped.push(`${c.version}/${c.name}`);
  }
  return dropped;
}

async function waitUntilAccepting(url: string, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return;
    } catch (err) {
      await client.end().catch(() => {});
      if (Date.now() > until) throw new Error(`${url} did not accept connections within ${ms / 1000} s: ${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const urlFor = (port: number) => `postgres://postgres@127.0.0.1:${port}/postgres`;

/** Creates, configures and starts a cluster of this run's own on `port`. */
export async function createOwnCluster(port: number): Promise<Cluster> {
  const version = newestVersion();
  const name = `chaos_${process.pid}`;
  try {
    await exec('pg_createcluster', [
      version,
      name,
      '--port',
      String(port),
      '--start-conf',
      'manual',
      '--',
      '--auth=trust',
    ]);
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? err).trim();
    throw new Error(
      `pg_createcluster ${version} ${name} failed (it needs root, or a user who may write /etc/postgresql ` +
        `and /var/lib/postgresql; or name an existing cluster with --postgres-cluster): ${stderr}`,
    );
  }
  const cluster: Cluster = { version, name, port, url: urlFor(port), owned: true };
  try {
    // Loopback only, and small: it serves one service process and this script.
    const confDir = `/etc/postgresql/${version}/${name}/conf.d`;
    mkdirSync(confDir, { recursive: true });
    writeFileSync(join(confDir, 'chaos.conf'), "listen_addresses = '127.0.0.1'\nmax_connections = 60\n");
    await exec('pg_ctlcluster', ['--skip-systemctl-redirect', version, name, 'start']);
    await waitUntilAccepting(cluster.url);
  } catch (err) {
    await dropCluster(cluster).catch(() => {});
    throw err;
  }
  return cluster;
}

/** An existing cluster, online, with no other client connected (the run will restart it). */
export async function useCluster(value: string): Promise<Cluster> {
  const { version, name } = parseClusterName(value);
  const found = (await listClusters()).find((c) => c.version === version && c.name === name);
  if (!found) throw new Error(`--postgres-cluster ${value}: no such cluster (pg_lsclusters lists them)`);
  if (found.status !== 'online') throw new Error(`--postgres-cluster ${value}: ${found.status}, not online`);
  const cluster: Cluster = { version, name, port: found.port, url: urlFor(found.port), owned: false };
  const client = new pg.Client({ connectionString: cluster.url });
  client.on('error', () => {});
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number; who: string | null }>(
      `SELECT count(*)::int AS n, string_agg(DISTINCT coalesce(nullif(application_name, ''), datname), ', ') AS who
         FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`,
    );
    if (rows[0]!.n > 0) {
      throw new Error(
        `--postgres-cluster ${value}: ${rows[0]!.n} other sessions are connected (${rows[0]!.who}); ` +
          'the chaos run restarts this cluster, so it must be one nobody else uses (or leave the option out: ' +
          'the run then makes a cluster of its own)',
      );
    }
  } finally {
    await client.end().catch(() => {});
  }
  return cluster;
}

/** Restarts the cluster (fast shutdown, then start); resolves when pg_ctlcluster returns. */
export async function restartCluster(cluster: Cluster): Promise<void> {
  await exec('pg_ctlcluster', ['--skip-systemctl-redirect', cluster.version, cluster.name, 'restart']);
}

/**
 * Stops and drops a cluster this run created (its data, configuration and log). A cluster the run
 * did not create is left alone. One left by a run that was SIGKILLed is dropped by the next run's
 * dropLeftoverClusters().
 */
export async function dropCluster(cluster: Cluster): Promise<void> {
  if (!cluster.owned) return;
  await exec('pg_dropcluster', ['--stop', cluster.version, cluster.name]);
}
