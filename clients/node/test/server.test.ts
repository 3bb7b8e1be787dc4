// The server around the flow, over a real gRPC connection on 127.0.0.1:
// health, reflection (v1 and v1alpha), the deadline, the graceful stop.

import * as assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import * as grpc from '@grpc/grpc-js';
import { FileDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';

import type { ServerReflectionRequest } from '../gen/grpc/reflection/v1/ServerReflectionRequest';
import type { ServerReflectionResponse__Output } from '../gen/grpc/reflection/v1/ServerReflectionResponse';
import { SERVICE_NAME, remainingMs } from '../src/server';
import { Harness, WELCOME, protos, step } from './helpers';

function decode(bytes: Uint8Array): IFileDescriptorProto & { dependency: string[] } {
  return FileDescriptorProto.decode(bytes) as unknown as IFileDescriptorProto & {
    dependency: string[];
  };
}

/** One request on a ServerReflectionInfo stream of `version`; resolves to the reply. */
function reflect(
  target: string,
  version: 'v1' | 'v1alpha',
  request: ServerReflectionRequest,
): Promise<ServerReflectionResponse__Output> {
  const client = new protos.grpc.reflection[version].ServerReflection(
    target,
    grpc.credentials.createInsecure(),
  );
  return new Promise<ServerReflectionResponse__Output>((resolve, reject) => {
    const call = client.ServerReflectionInfo({ deadline: Date.now() + 5000 });
    call.on('data', (reply: ServerReflectionResponse__Output) => {
      resolve(reply);
      call.end();
    });
    call.on('error', reject);
    call.on('end', () => reject(new Error('no reply')));
    call.write(request);
  }).finally(() => client.close());
}

describe('health and reflection', () => {
  let h: Harness;
  before(async () => {
    h = await Harness.start();
  });
  after(async () => {
    await h.close();
  });

  test('health is SERVING for "" and for the FlowHandler', async () => {
    assert.equal(await h.check(''), 'SERVING');
    assert.equal(await h.check(SERVICE_NAME), 'SERVING');
  });

  test('health answers NOT_FOUND for a service it does not know', async () => {
    await assert.rejects(h.check('no.such.Service'), { code: grpc.status.NOT_FOUND });
  });

  for (const version of ['v1', 'v1alpha'] as const) {
    test(`reflection ${version} lists the services`, async () => {
      const reply = await reflect(h.target, version, { list_services: '*' });
      const names = (reply.list_services_response?.service ?? []).map((s) => s.name).sort();
      assert.deepEqual(names, [
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
        SERVICE_NAME,
      ]);
    });

    test(`reflection ${version} describes the FlowHandler with linkable descriptors`, async () => {
      // What grpcurl does: the file of the symbol, then each dependency by name.
      const reply = await reflect(h.target, version, { file_containing_symbol: SERVICE_NAME });
      const files = (reply.file_descriptor_response?.file_descriptor_proto ?? []).map(decode);
      const flows = files[0];
      assert.ok(flows, JSON.stringify(reply.error_response));
      assert.equal(flows.package, 'platica.flows.v1');
      assert.deepEqual(
        flows.service?.map((s) => `${s.name}/${s.method?.map((m) => `${m.name}(${m.inputType})`)}`),
        ['FlowHandler/Exchange(.platica.flows.v1.ExchangeRequest)'],
      );
      assert.ok(flows.dependency.length > 0, 'no dependencies');
      for (const dependency of flows.dependency) {
        const byName = await reflect(h.target, version, { file_by_filename: dependency });
        const [file] = (byName.file_descriptor_response?.file_descriptor_proto ?? []).map(decode);
        assert.equal(file?.name, dependency, JSON.stringify(byName.error_response));
      }
      const exchange = flows.messageType?.find((m) => m.name === 'FlowExchange');
      const field = (name: string) => exchange?.field?.find((f) => f.name === name);
      assert.equal(field('payload')?.typeName, '.google.protobuf.Struct');
      assert.equal((field('screen') as { proto3Optional?: boolean })?.proto3Optional, true);
      const struct = files.flatMap((f) => f.messageType ?? []).find((m) => m.name === 'Struct');
      assert.equal(struct?.field?.[0]?.typeName, '.google.protobuf.Struct.FieldsEntry');
    });
  }
});

describe('the deadline', () => {
  test('remaining time: Infinity without a deadline, negative once it passed', () => {
    assert.equal(remainingMs(Infinity), Infinity);
    assert.equal(remainingMs(new Date(1_000), 1_500), -500);
    assert.equal(remainingMs(2_000, 1_500), 500);
  });

  test('gives up at once (DEADLINE_EXCEEDED) when the deadline leaves no time for the work', async () => {
    const h = await Harness.start({ workMs: 5000 });
    try {
      const started = performance.now();
      const error = await h.exchangeError(step('ACTION_INIT'), 1000);
      assert.equal(error.code, grpc.status.DEADLINE_EXCEEDED);
      assert.equal(error.details, 'no time left'); // the server's answer, not the client's timer
      assert.ok(performance.now() - started < 900);
    } finally {
      await h.close();
    }
  });

  test('does the work when the deadline allows', async () => {
    const h = await Harness.start({ workMs: 50 });
    try {
      assert.deepEqual(await h.exchange(step('ACTION_INIT'), 2000), WELCOME);
    } finally {
      await h.close();
    }
  });
});

describe('the graceful stop', () => {
  test('finishes calls in flight and turns health NOT_SERVING', async () => {
    const h = await Harness.start({ workMs: 1000 });
    const statuses: string[] = [];
    const watch = h.health.Watch({ service: '' });
    watch.on('data', (reply: { status?: string }) => statuses.push(reply.status ?? '?'));
    watch.on('error', () => {}); // cancelled below
    try {
      const call = h.exchange(step('ACTION_INIT'), 5000);
      await sleep(300); // the call is in the handler's simulated work
      const stopped = h.running.stop(5000);
      await sleep(100);
      assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
      watch.cancel(); // an open stream would hold the drain until the grace ends
      assert.deepEqual(await call, WELCOME);
      const started = performance.now();
      await stopped;
      assert.ok(performance.now() - started < 2000, 'the stop waited for the grace');
    } finally {
      await h.close();
    }
  });
});
