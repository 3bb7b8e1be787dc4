// Repairs the file descriptors that @grpc/proto-loader attaches to a package
// definition, so that server reflection hands clients a set they can link.
//
// proto-loader describes the protos with protobufjs's Root#toDescriptor, which
// writes one file per package (`platica_flows_v1.proto`, `google_protobuf.proto`)
// and loses three things on the way:
//   - `dependency` is empty, so a reflection client (grpcurl describe, invoking
//     a method) cannot resolve `google.protobuf.Struct` and the like
//     (grpc/grpc-node#3034; @grpc/reflection serves the descriptors as given);
//   - type references are relative (`Action`, `google.protobuf.Struct`);
//   - proto3 `optional` fields lose `proto3_optional` and look like members of
//     real oneofs named `_field`;
//   - a map field's entry type is named `Fields`, not `FieldsEntry` as protoc
//     names it (and as descriptor validators, Go's protodesc among them, require).
// linkDescriptors decodes the files, resolves every reference with protobuf's
// scoping rules, and writes them back fully qualified, with the dependency list,
// the proto3_optional flags and protoc's map entry names.

import type { PackageDefinition } from '@grpc/proto-loader';
import {
  FileDescriptorProto,
  type IDescriptorProto,
  type IEnumDescriptorProto,
  type IFieldDescriptorProto,
  type IFileDescriptorProto,
} from 'protobufjs/ext/descriptor';

// protobufjs's typings of the descriptor messages miss these two.
type Field = IFieldDescriptorProto & { proto3Optional?: boolean };
type File = IFileDescriptorProto & { dependency?: string[] };

/** Every fully qualified type (message or enum) and service name, to the file declaring it. */
function indexSymbols(files: File[]): Map<string, File> {
  const symbols = new Map<string, File>();
  const enums = (prefix: string, list: IEnumDescriptorProto[] | undefined, file: File) => {
    for (const e of list ?? []) symbols.set(`${prefix}${e.name}`, file);
  };
  const messages = (prefix: string, list: IDescriptorProto[] | undefined, file: File) => {
    for (const message of list ?? []) {
      const name = `${prefix}${message.name}`;
      symbols.set(name, file);
      messages(`${name}.`, message.nestedType, file);
      enums(`${name}.`, message.enumType, file);
    }
  };
  for (const file of files) {
    const prefix = file.package ? `${file.package}.` : '';
    messages(prefix, file.messageType, file);
    enums(prefix, file.enumType, file);
    for (const service of file.service ?? []) symbols.set(`${prefix}${service.name}`, file);
  }
  return symbols;
}

/**
 * A reference as protoc resolves it: `.a.b.C` is absolute; otherwise the
 * innermost enclosing scope of `scope` (a dotted name) that has it wins.
 */
function resolve(reference: string, scope: string, symbols: Map<string, File>): string | undefined {
  if (reference.startsWith('.')) {
    const name = reference.slice(1);
    return symbols.has(name) ? name : undefined;
  }
  const parts = scope ? scope.split('.') : [];
  for (let i = parts.length; i >= 0; i--) {
    const name = [...parts.slice(0, i), reference].join('.');
    if (symbols.has(name)) return name;
  }
  return undefined;
}

function linkFile(file: File, symbols: Map<string, File>): File {
  const dependencies = new Set<string>();
  // Decoded messages read unset fields from their prototype: only set fields
  // are rewritten (an own empty string would be encoded).
  const link = <K extends string>(holder: Partial<Record<K, string>>, key: K, scope: string) => {
    const reference = Object.hasOwn(holder, key) ? holder[key] : undefined;
    if (!reference) return;
    const name = resolve(reference, scope, symbols);
    if (name === undefined) return; // left as it was; nothing better to say
    const declaring = symbols.get(name);
    if (declaring && declaring !== file && declaring.name) dependencies.add(declaring.name);
    holder[key] = `.${name}`;
  };
  const fields = (list: Field[] | undefined, scope: string) => {
    for (const field of list ?? []) {
      link(field, 'typeName', scope);
      link(field, 'extendee', scope);
    }
  };
  const messages = (list: IDescriptorProto[] | undefined, scope: string) => {
    for (const message of list ?? []) {
      const name = scope ? `${scope}.${message.name}` : `${message.name}`;
      fields(message.field, name);
      fields(message.extension, name);
      markProto3Optional(message);
      messages(message.nestedType, name);
    }
  };
  const pkg = file.package ?? '';
  messages(file.messageType, pkg);
  fields(file.extension, pkg);
  for (const service of file.service ?? []) {
    for (const method of service.method ?? []) {
      link(method, 'inputType', pkg);
      link(method, 'outputType', pkg);
    }
  }
  file.dependency = [...dependencies].sort();
  return file;
}

/** protoc's name for the entry type of map field `name`: `my_field` -> `MyFieldEntry`. */
export function mapEntryName(name: string): string {
  let result = '';
  let capitalize = true;
  for (const c of name) {
    if (c === '_') {
      capitalize = true;
    } else {
      result += capitalize ? c.toUpperCase() : c;
      capitalize = false;
    }
  }
  return `${result}Entry`;
}

/** Renames the map entry types of `message` (and its nested messages) as protoc does. */
function renameMapEntries(message: IDescriptorProto): void {
  const nested = message.nestedType ?? [];
  for (const field of message.field ?? []) {
    const entry = nested.find((n) => n.options?.mapEntry && n.name === field.typeName);
    if (entry === undefined || field.name === undefined) continue;
    entry.name = mapEntryName(field.name);
    field.typeName = entry.name;
  }
  nested.forEach(renameMapEntries);
}

/** A oneof `_x` whose only member is the field `x` is proto3 `optional x`'s synthetic oneof. */
function markProto3Optional(message: IDescriptorProto): void {
  const oneofs = message.oneofDecl ?? [];
  const fields: Field[] = message.field ?? [];
  // An unset oneofIndex reads 0 from the prototype: only own values count.
  const inOneof = (f: Field, index: number) =>
    Object.hasOwn(f, 'oneofIndex') && f.oneofIndex === index;
  for (const field of fields) {
    if (!Object.hasOwn(field, 'oneofIndex') || typeof field.oneofIndex !== 'number') continue;
    const oneof = oneofs[field.oneofIndex];
    const members = fields.filter((f) => inOneof(f, field.oneofIndex as number));
    if (oneof?.name === `_${field.name}` && members.length === 1) field.proto3Optional = true;
  }
}

/** The file descriptors of `definition`, linked (see the file comment). */
export function linkDescriptors(buffers: readonly Buffer[]): Buffer[] {
  const files = buffers.map((buffer) => FileDescriptorProto.decode(buffer) as File);
  for (const file of files) file.messageType?.forEach(renameMapEntries);
  const symbols = indexSymbols(files);
  return files.map((file) =>
    Buffer.from(FileDescriptorProto.encode(linkFile(file, symbols)).finish()),
  );
}

/** `definition` with every type's `fileDescriptorProtos` linked. */
export function withLinkedDescriptors(definition: PackageDefinition): PackageDefinition {
  const linked = new Map<readonly Buffer[], Buffer[]>();
  const result: PackageDefinition = {};
  for (const [name, entry] of Object.entries(definition)) {
    if ('fileDescriptorProtos' in entry && Array.isArray(entry.fileDescriptorProtos)) {
      const original = entry.fileDescriptorProtos;
      let buffers = linked.get(original);
      if (buffers === undefined) {
        buffers = linkDescriptors(original);
        linked.set(original, buffers);
      }
      result[name] = { ...entry, fileDescriptorProtos: buffers } as typeof entry;
    } else {
      result[name] = entry;
    }
  }
  return result;
}
