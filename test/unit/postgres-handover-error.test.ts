// A new connection whose server shuts down as it is handed out must not crash the process. When
// PostgreSQL restarts (fast shutdown), a connection that has just been opened can receive its first
// ReadyForQuery and the server's FATAL 57P01 in one read: pg-pool hands the client to
// pool.connect()'s promise and removes its idle listener, and pg emits the 57P01 as an 'error'
// before the awaiting transaction() resumes to attach its own. Found by the chaos run's PostgreSQL
// restart (bench/chaos.bench.ts --restart-postgres), which ended the service with an unhandled
// 'error'. Here a local server speaking PostgreSQL's wire protocol sends exactly that, in one write.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { openPostgres } from '../../src/db/postgres.ts';
import { DatabaseUnavailableError } from '../../src/errors.ts';

function message(type: string, body: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
}

const authenticationOk = () => message('R', Buffer.from([0, 0, 0, 0]));
const readyForQuery = () => message('Z', Buffer.from('I'));
const adminShutdown = () =>
  message(
    'E',
    Buffer.concat([
      Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0'),
      Buffer.from([0]),
    ]),
  );

test('a connection that gets ReadyForQuery and 57P01 in one read fails the transaction as unavailable, without crashing', async () => {
  const sockets: Socket[] = [];
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    sockets.push(socket);
    // The startup message (no type byte) is all the client sends before it waits for us.
    socket.once('data', () => {
      socket.end(Buffer.concat([authenticationOk(), readyForQuery(), adminShutdown()]));
    });
    socket.on('error', () => {});
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const idleErrors: Error[] = [];
  const db = openPostgres({
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    onIdleClientError: (err) => idleErrors.push(err),
  });
  try {
    let ran = false;
    await assert.rejects(
      db.transaction(async () => {
        ran = true;
      }),
      (err: unknown) => err instanceof DatabaseUnavailableError,
    );
    assert.equal(ran, false, 'nothing ran on the dead connection');
    assert.equal(connections, 1);
    // The pool dropped the dead client: nothing of it is left to hand out.
    assert.equal(db.pool.totalCount, 0);
  } finally {
    await db.close();
    for (const s of sockets) s.destroy();
    server.close();
  }
});
