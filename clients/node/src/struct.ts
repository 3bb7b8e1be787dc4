// google.protobuf.Struct and Value, as @grpc/proto-loader represents them,
// from and to plain JSON values.

import type { ListValue__Output } from '../gen/google/protobuf/ListValue';
import type { Struct, Struct__Output } from '../gen/google/protobuf/Struct';
import type { Value, Value__Output } from '../gen/google/protobuf/Value';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/**
 * A JSON value as a Value. Numbers become doubles, as in every Struct: the
 * bridge renders a whole double within ±2^53 as a JSON integer (499, not 499.0).
 */
export function toValue(json: Json): Value {
  if (json === null) return { nullValue: 'NULL_VALUE' };
  switch (typeof json) {
    case 'boolean':
      return { boolValue: json };
    case 'number':
      return { numberValue: json };
    case 'string':
      return { stringValue: json };
  }
  if (Array.isArray(json)) return { listValue: { values: json.map(toValue) } };
  return { structValue: toStruct(json) };
}

export function toStruct(object: JsonObject): Struct {
  const fields: Record<string, Value> = {};
  for (const [key, value] of Object.entries(object)) fields[key] = toValue(value);
  return { fields };
}

/** A received Value as JSON; an unset Value (no kind) is null. */
export function fromValue(value: Value__Output | undefined): Json {
  switch (value?.kind) {
    case 'boolValue':
      return value.boolValue ?? false;
    case 'numberValue':
      return value.numberValue ?? 0;
    case 'stringValue':
      return value.stringValue ?? '';
    case 'listValue':
      return fromList(value.listValue);
    case 'structValue':
      return fromStruct(value.structValue);
    default:
      return null;
  }
}

function fromList(list: ListValue__Output | undefined): Json[] {
  return (list?.values ?? []).map(fromValue);
}

export function fromStruct(struct: Struct__Output | undefined): JsonObject {
  const object: JsonObject = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) object[key] = fromValue(value);
  return object;
}

/** The field `key` of a Struct when it is a string; undefined when absent or not a string. */
export function stringField(struct: Struct__Output | undefined, key: string): string | undefined {
  const fields = struct?.fields;
  if (fields === undefined || !Object.hasOwn(fields, key)) return undefined;
  const value = fields[key];
  return value?.kind === 'stringValue' ? (value.stringValue ?? '') : undefined;
}
