#!/usr/bin/env node
// Generates the TypeScript types of the protos into gen/ (gitignored) with
// proto-loader-gen-types: flows.proto from ../../proto (the contract), plus
// grpc.health.v1 and grpc.reflection v1/v1alpha from the packages that serve
// them, so that the tests' clients are typed too. The loader options below
// must match LOADER_OPTIONS in src/protos.ts: the types describe what
// @grpc/proto-loader produces with those options.
//
//   node scripts/gen-types.js    (npm run gen; `npm run build` runs it)
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const gen = path.join(root, 'gen');
const protoRoot = path.resolve(root, '..', '..', 'proto');
// grpc-health-check ships proto/health/v1/health.proto and loads it by that name.
const healthProtos = path.resolve(require('grpc-health-check').protoPath, '..', '..', '..');
const reflectionProtos = path.join(
  path.dirname(require.resolve('@grpc/reflection/package.json')),
  'build',
  'proto',
);

function generate(includeDir, files) {
  execFileSync(
    process.execPath,
    [
      require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js'),
      '--keepCase',
      '--longs=String',
      '--enums=String',
      '--oneofs',
      '--grpcLib=@grpc/grpc-js',
      `--includeDirs=${includeDir}`,
      `--outDir=${gen}`,
      ...files,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
}

fs.rmSync(gen, { recursive: true, force: true });
generate(protoRoot, ['platica/flows/v1/flows.proto']);
generate(healthProtos, ['health/v1/health.proto']);
generate(reflectionProtos, [
  'grpc/reflection/v1/reflection.proto',
  'grpc/reflection/v1alpha/reflection.proto',
]);
