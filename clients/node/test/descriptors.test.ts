// The descriptor repair behind reflection (src/descriptors.ts).

import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  FileDescriptorProto,
  type IDescriptorProto,
  type IFileDescriptorProto,
} from 'protobufjs/ext/descriptor';

import { linkDescriptors, mapEntryName } from '../src/descriptors';
import { loadPackageDefinition } from '../src/protos';

type File = IFileDescriptorProto & { dependency: string[] };

function linkedFiles(): File[] {
  const definition = loadPackageDefinition();
  const entry = definition['platica.flows.v1.ExchangeRequest'];
  assert.ok(entry && 'fileDescriptorProtos' in entry);
  const buffers = entry.fileDescriptorProtos as Buffer[];
  return linkDescriptors(buffers).map((b) => FileDescriptorProto.decode(b) as unknown as File);
}

function allMessages(list: IDescriptorProto[] | undefined): IDescriptorProto[] {
  return (list ?? []).flatMap((m) => [m, ...allMessages(m.nestedType)]);
}

describe('linked descriptors', () => {
  test('map entry names as protoc makes them', () => {
    assert.equal(mapEntryName('fields'), 'FieldsEntry');
    assert.equal(mapEntryName('my_field'), 'MyFieldEntry');
    assert.equal(mapEntryName('_x'), 'XEntry');
    assert.equal(mapEntryName('a__b'), 'ABEntry');
  });

  test('every reference is fully qualified and its file a declared dependency', () => {
    const files = linkedFiles();
    const declaring = new Map<string, string>();
    for (const file of files) {
      for (const m of allMessages(file.messageType)) {
        // nested names are found by suffix below; top-level ones are enough here
        declaring.set(`.${file.package}.${m.name}`, file.name ?? '');
      }
      for (const e of file.enumType ?? [])
        declaring.set(`.${file.package}.${e.name}`, file.name ?? '');
    }
    for (const file of files) {
      const references = [
        ...allMessages(file.messageType).flatMap((m) => (m.field ?? []).map((f) => f.typeName)),
        ...(file.service ?? []).flatMap((s) =>
          (s.method ?? []).flatMap((m) => [m.inputType, m.outputType]),
        ),
      ].filter((r): r is string => Boolean(r));
      for (const reference of references) {
        assert.ok(reference.startsWith('.'), `${file.name}: ${reference} is relative`);
        const owner = declaring.get(reference);
        if (owner !== undefined && owner !== file.name) {
          assert.ok(file.dependency.includes(owner), `${file.name} does not import ${owner}`);
        }
      }
    }
  });

  test('the contract depends on the well-known types it uses', () => {
    const flows = linkedFiles().find((f) => f.package === 'platica.flows.v1');
    assert.deepEqual(flows?.dependency, ['google_protobuf.proto']);
  });
});
