// The program itself: `listening on HOST:PORT`, the port options, signals.

import * as assert from 'node:assert/strict';
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { describe, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { FlowHandlerClient } from '../gen/platica/flows/v1/FlowHandler';
import { WELCOME, protos, step } from './helpers';

const MAIN = path.resolve(__dirname, '..', 'src', 'main.js');

interface Started {
  child: ChildProcessByStdio<null, Readable, Readable>;
  firstLine: string;
  stdout: string[];
  stderr: string[];
}

async function startMain(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const childEnv = { ...process.env, ...env };
  if (!('PORT' in env)) delete childEnv['PORT'];
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => stdout.push(line));
  const [firstLine] = (await Promise.race([
    once(lines, 'line'),
    once(child, 'exit').then(() => [undefined]),
  ])) as [string | undefined];
  if (firstLine === undefined) throw new Error(`exited before printing a line: ${stderr.join('')}`);
  return { child, firstLine, stdout, stderr };
}

async function exitOf(child: Started['child']): Promise<[number | null, NodeJS.Signals | null]> {
  if (child.exitCode !== null || child.signalCode !== null)
    return [child.exitCode, child.signalCode];
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return [code, signal];
}

function exchangeInit(client: FlowHandlerClient): Promise<unknown> {
  return new Promise((resolve, reject) => {
    client.Exchange(step('ACTION_INIT'), { deadline: Date.now() + 5000 }, (error, reply) =>
      error ? reject(error) : resolve(reply),
    );
  });
}

describe('the program', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`prints its port, serves, and exits 0 on ${signal}`, async () => {
      const started = await startMain(['--port', '0']);
      try {
        const match = /^listening on 127\.0\.0\.1:(\d+)$/.exec(started.firstLine);
        assert.ok(match, started.firstLine);
        const port = Number(match[1]);
        assert.ok(port > 0);
        const client = new protos.platica.flows.v1.FlowHandler(
          `127.0.0.1:${port}`,
          grpc.credentials.createInsecure(),
        );
        const reply = (await exchangeInit(client)) as { screen?: string };
        client.close();
        assert.equal(reply.screen, WELCOME.screen);
        started.child.kill(signal);
        assert.deepEqual(await exitOf(started.child), [0, null]);
        assert.deepEqual(started.stdout, [started.firstLine], 'exactly one line on stdout');
      } finally {
        started.child.kill('SIGKILL');
      }
    });
  }

  test('takes its port from $PORT when --port is not given', async () => {
    const started = await startMain([], { PORT: '0' });
    try {
      assert.match(started.firstLine, /^listening on 127\.0\.0\.1:[1-9]\d*$/);
      started.child.kill('SIGTERM');
      assert.deepEqual(await exitOf(started.child), [0, null]);
    } finally {
      started.child.kill('SIGKILL');
    }
  });

  test('refuses a port that is not one', async () => {
    const child = spawn(process.execPath, [MAIN, '--port', '70000'], { stdio: 'ignore' });
    assert.deepEqual(await exitOf(child as unknown as Started['child']), [2, null]);
  });

  test('exits 1 when it cannot listen', async () => {
    const holder = await startMain(['--port', '0']);
    try {
      const port = holder.firstLine.split(':').pop() ?? '';
      const child = spawn(process.execPath, [MAIN, '--port', port], { stdio: 'ignore' });
      assert.deepEqual(await exitOf(child as unknown as Started['child']), [1, null]);
    } finally {
      holder.child.kill('SIGKILL');
    }
  });
});
