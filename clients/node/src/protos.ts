// Loads the protos at run time with @grpc/proto-loader: the contract from
// ../../proto (the repository's proto/), and grpc.health.v1 and
// grpc.reflection v1/v1alpha from the packages that serve them, so that
// reflection describes every service this server has.

import * as path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';

import type { ProtoGrpcType as FlowsProto } from '../gen/flows';
import type { ProtoGrpcType as HealthProto } from '../gen/health';
import type { ProtoGrpcType as ReflectionProto } from '../gen/reflection';

/** The repository's proto/ directory (this file runs from dist/src/). */
export const PROTO_ROOT = path.resolve(__dirname, '..', '..', '..', '..', 'proto');

/** The contract, relative to PROTO_ROOT. */
export const FLOWS_PROTO = 'platica/flows/v1/flows.proto';

/**
 * How messages become JavaScript objects. scripts/gen-types.js passes the same
 * options to proto-loader-gen-types, so the types in gen/ describe exactly these
 * objects: field names as in the .proto (snake_case), enums as their names,
 * 64-bit integers as strings, the set member of a oneof named in a virtual
 * field (`Value.kind`), and no defaults filled in (an absent field is
 * `undefined`, so proto3 `optional` fields keep their presence).
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  oneofs: true,
};

const HEALTH_ROOT = path.resolve(healthProtoPath, '..', '..', '..');
const REFLECTION_ROOT = path.join(
  path.dirname(require.resolve('@grpc/reflection/package.json')),
  'build',
  'proto',
);

/** Every proto this server serves, as one package definition (for reflection). */
export function loadPackageDefinition(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(
    [
      FLOWS_PROTO,
      'health/v1/health.proto',
      'grpc/reflection/v1/reflection.proto',
      'grpc/reflection/v1alpha/reflection.proto',
    ],
    { ...LOADER_OPTIONS, includeDirs: [PROTO_ROOT, HEALTH_ROOT, REFLECTION_ROOT] },
  );
}

export type Protos = FlowsProto & HealthProto & ReflectionProto;

/** The loaded package definition as typed constructors (services, clients). */
export function loadProtos(definition = loadPackageDefinition()): Protos {
  return grpc.loadPackageDefinition(definition) as unknown as Protos;
}
